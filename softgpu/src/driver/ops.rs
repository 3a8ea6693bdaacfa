//! The operations a stream runs: copies, sets and kernel launches. Issued to a stream they
//! run at once ([`Op::run`]); issued to a capturing stream they are checked
//! ([`Op::validate`]) and recorded, and a graph launch runs the recorded list in order.
//!
//! Device-to-device copies carry the sanitizer's written-bytes shadow with the data, so a
//! kernel that reads bytes copied from never-written memory is still reported.

use std::sync::Arc;

use super::errors::{Failure, bail};
use crate::device::Device;
use crate::exec::LaunchConfig;
use crate::memory::Allocation;
use crate::program::Kernel;

/// One end of a 2D copy: where row `r` starts is `base + x + (y + r) * pitch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    pub place: Place,
    pub x: usize,
    pub y: usize,
    pub pitch: usize,
}

/// Host or device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A host address.
    Host(usize),
    Device(u64),
}

/// A 2D copy of `height` rows of `width` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copy2D {
    pub src: End,
    pub dst: End,
    pub width: usize,
    pub height: usize,
}

/// A kernel launch with its parameter buffer, copied when issued.
#[derive(Debug)]
pub struct LaunchOp {
    pub kernel: Arc<Kernel>,
    pub cfg: LaunchConfig,
    pub params: Vec<u8>,
    /// Static plus dynamic shared memory allowed (the function's attribute when issued).
    pub max_shared: u32,
}

/// An operation on a stream. Host memory is named by address: like CUDA, a captured copy
/// reads or writes the host memory when the graph runs, not when it is captured.
#[derive(Clone, Debug)]
pub enum Op {
    HtoD {
        dst: u64,
        src: usize,
        len: usize,
    },
    DtoH {
        dst: usize,
        src: u64,
        len: usize,
    },
    DtoD {
        dst: u64,
        src: u64,
        len: usize,
    },
    /// `count` elements of `width` (1 or 4) bytes set to `value`.
    Set {
        dst: u64,
        value: u32,
        width: usize,
        count: usize,
    },
    Copy2D(Copy2D),
    Launch(Arc<LaunchOp>),
}

/// The allocation and offset holding `addr .. + len`, or `CUDA_ERROR_INVALID_VALUE` naming
/// the address and the allocation.
pub(crate) fn device_range(
    device: &Device,
    addr: u64,
    len: usize,
    what: &str,
) -> Result<(Arc<Allocation>, u64), Failure> {
    device.memory.range(addr, len as u64).map_err(|e| Failure::invalid(format!("{what}: {e}")))
}

fn host_range(addr: usize, len: usize, what: &str) -> Result<(), Failure> {
    if len > 0 && addr == 0 {
        bail!(CUDA_ERROR_INVALID_VALUE, "{what}: null host pointer for {len} bytes");
    }
    if addr.checked_add(len).is_none() {
        bail!(CUDA_ERROR_INVALID_VALUE, "{what}: host range {addr:#x}+{len} wraps around");
    }
    Ok(())
}

/// Copies `len` bytes between allocations (overlap allowed), marking in `dst` the bytes that
/// were written in `src`.
fn copy_device(src: &Allocation, src_off: u64, dst: &Allocation, dst_off: u64, len: u64) {
    // SAFETY: both ranges were bounds-checked; `copy` allows overlap.
    unsafe {
        std::ptr::copy(
            src.host_ptr().add(src_off as usize),
            dst.host_ptr().add(dst_off as usize),
            len as usize,
        )
    }
    let mut i = 0;
    while i < len {
        let end = src.first_unwritten(src_off + i, len - i).map_or(len, |u| u - src_off);
        dst.mark_written(dst_off + i, end - i);
        i = end;
        while i < len && src.first_unwritten(src_off + i, 1).is_some() {
            i += 1;
        }
    }
}

/// An allocation and an offset in it.
type Located = (Arc<Allocation>, u64);

impl Copy2D {
    /// Checks the shape; for each end, its device allocation and the offset of row 0.
    fn resolve(&self, device: &Device) -> Result<[Option<Located>; 2], Failure> {
        let mut out = [None, None];
        for (k, (end, what)) in
            [(&self.src, "2D copy source"), (&self.dst, "2D copy destination")].into_iter().enumerate()
        {
            if self.height > 1 && end.pitch < self.width {
                bail!(
                    CUDA_ERROR_INVALID_VALUE,
                    "{what}: pitch {} is below the row width {}",
                    end.pitch,
                    self.width
                );
            }
            let first = end.y.checked_mul(end.pitch).and_then(|o| o.checked_add(end.x));
            let span = (self.height - 1).checked_mul(end.pitch).and_then(|s| s.checked_add(self.width));
            let (Some(first), Some(span)) = (first, span) else {
                bail!(CUDA_ERROR_INVALID_VALUE, "{what}: offsets overflow");
            };
            match end.place {
                Place::Host(p) => host_range(p.saturating_add(first), span, what)?,
                Place::Device(d) => {
                    out[k] = Some(device_range(device, d.wrapping_add(first as u64), span, what)?)
                }
            }
        }
        Ok(out)
    }

    fn run(&self, device: &Device) -> Result<(), Failure> {
        if self.width == 0 || self.height == 0 {
            return Ok(());
        }
        let [src, dst] = self.resolve(device)?;
        let host = |end: &End, r: usize| match end.place {
            Place::Host(p) => p + end.x + (end.y + r) * end.pitch,
            Place::Device(_) => unreachable!(),
        };
        let w = self.width;
        let (sp, dp) = (self.src.pitch as u64, self.dst.pitch as u64);
        for r in 0..self.height {
            let ru = r as u64;
            // SAFETY: host rows are the caller's memory (checked non-null); device rows were
            // bounds-checked as one span in `resolve`.
            unsafe {
                match (&src, &dst) {
                    (Some((sa, so)), Some((da, dof))) => {
                        copy_device(sa, so + ru * sp, da, dof + ru * dp, w as u64)
                    }
                    (None, Some((da, dof))) => da
                        .write(dof + ru * dp, std::slice::from_raw_parts(host(&self.src, r) as *const u8, w)),
                    (Some((sa, so)), None) => sa
                        .read(so + ru * sp, std::slice::from_raw_parts_mut(host(&self.dst, r) as *mut u8, w)),
                    (None, None) => {
                        std::ptr::copy(host(&self.src, r) as *const u8, host(&self.dst, r) as *mut u8, w)
                    }
                }
            }
        }
        Ok(())
    }
}

impl Op {
    /// Checks the operation's memory ranges without running it (for capture).
    pub fn validate(&self, device: &Device) -> Result<(), Failure> {
        match *self {
            Op::HtoD { dst, src, len } => {
                host_range(src, len, "copy source")?;
                if len > 0 {
                    device_range(device, dst, len, "copy destination")?;
                }
            }
            Op::DtoH { dst, src, len } => {
                host_range(dst, len, "copy destination")?;
                if len > 0 {
                    device_range(device, src, len, "copy source")?;
                }
            }
            Op::DtoD { dst, src, len } if len > 0 => {
                device_range(device, src, len, "copy source")?;
                device_range(device, dst, len, "copy destination")?;
            }
            Op::Set { dst, width, count, .. } => {
                if width == 4 && dst % 4 != 0 {
                    bail!(
                        CUDA_ERROR_INVALID_VALUE,
                        "32-bit set at {dst:#x}: the address must be 4-byte aligned"
                    );
                }
                let len = count.checked_mul(width).ok_or_else(|| Failure::invalid("set length overflows"))?;
                if len > 0 {
                    device_range(device, dst, len, "set destination")?;
                }
            }
            Op::Copy2D(c) if c.width > 0 && c.height > 0 => {
                c.resolve(device)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs the operation to completion.
    pub fn run(&self, device: &Device) -> Result<(), Failure> {
        self.validate(device)?;
        match *self {
            Op::HtoD { dst, src, len } if len > 0 => {
                let (a, off) = device_range(device, dst, len, "copy destination")?;
                // SAFETY: the caller's host memory, checked non-null.
                a.write(off, unsafe { std::slice::from_raw_parts(src as *const u8, len) });
            }
            Op::DtoH { dst, src, len } if len > 0 => {
                let (a, off) = device_range(device, src, len, "copy source")?;
                // SAFETY: as above.
                a.read(off, unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, len) });
            }
            Op::DtoD { dst, src, len } if len > 0 => {
                let (sa, so) = device_range(device, src, len, "copy source")?;
                let (da, dof) = device_range(device, dst, len, "copy destination")?;
                copy_device(&sa, so, &da, dof, len as u64);
            }
            Op::Set { dst, value, width, count } if count > 0 => {
                let (a, off) = device_range(device, dst, count * width, "set destination")?;
                if width == 1 {
                    a.fill(off, count as u64, value as u8);
                } else {
                    let chunk: Vec<u8> = value.to_le_bytes().repeat(count.min(16 * 1024));
                    let total = (count * 4) as u64;
                    let mut done = 0;
                    while done < total {
                        let n = (total - done).min(chunk.len() as u64);
                        a.write(off + done, &chunk[..n as usize]);
                        done += n;
                    }
                }
            }
            Op::Copy2D(c) => c.run(device)?,
            Op::Launch(ref l) => super::launch::run(device, l)?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::DeviceMemory;

    #[test]
    fn device_copies_carry_the_written_shadow() {
        let m = DeviceMemory::new(1 << 20);
        let (a, b) = (m.alloc(40).unwrap(), m.alloc(40).unwrap());
        m.write(a, &[1; 8]).unwrap();
        m.write(a + 20, &[2; 5]).unwrap();
        let (sa, _) = m.range(a, 40).unwrap();
        let (db, _) = m.range(b, 40).unwrap();
        copy_device(&sa, 0, &db, 3, 30);
        // Written source bytes 0..8 and 20..25 land at 3..11 and 23..28.
        assert_eq!(db.first_unwritten(3, 8), None);
        assert_eq!(db.first_unwritten(0, 40), Some(0));
        assert_eq!(db.first_unwritten(11, 29), Some(11));
        assert_eq!(db.first_unwritten(23, 5), None);
        assert_eq!(db.first_unwritten(23, 6), Some(28));
        let mut out = [0u8; 30];
        m.read(b + 3, &mut out).unwrap();
        assert_eq!(&out[..8], &[1; 8]);
        assert_eq!(&out[20..25], &[2; 5]);
    }
}
