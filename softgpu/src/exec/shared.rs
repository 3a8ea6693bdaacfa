//! A CTA's shared memory with the sanitizer's shadow: which bytes were written, and for race
//! detection the warp and barrier interval of each byte's last write and last read.
//!
//! Accesses of one warp are ordered (a warp executes its instructions in order); two warps
//! touching a byte within one barrier interval, at least one writing, is a race, and so are
//! two lanes of one instruction writing the same byte.

use crate::fault::{Fault, FaultKind};

/// Shadow of one shared byte. Epochs count barrier intervals across every CTA this buffer has
/// served, so an epoch before the current CTA's first (`Shared::base`) means "not in this
/// CTA" and nothing needs clearing between CTAs.
#[derive(Clone, Copy, Default)]
struct ByteShadow {
    write_epoch: u32,
    read_epoch: u32,
    write_warp: u16,
    /// The reading warp, or [`MANY`] when several warps read in `read_epoch`.
    read_warp: u16,
}

const MANY: u16 = u16::MAX;

/// Shared memory of one CTA.
pub struct Shared {
    pub bytes: Vec<u8>,
    shadow: Vec<ByteShadow>,
    /// The current barrier interval; a completed `bar.sync` starts the next.
    pub epoch: u32,
    /// The current CTA's first epoch: shadows older than it belong to earlier CTAs.
    base: u32,
    pub check_races: bool,
    pub check_written: bool,
}

impl Shared {
    /// `size` bytes, none written.
    pub fn new(size: usize, check_races: bool, check_written: bool) -> Self {
        Shared {
            bytes: vec![0; size],
            shadow: vec![ByteShadow::default(); size],
            epoch: 1,
            base: 1,
            check_races,
            check_written,
        }
    }

    /// Starts the next CTA with `size` bytes, keeping the buffers: its bytes are whatever the
    /// last CTA left (shared memory starts undefined on a GPU too), all unwritten for it.
    pub fn reset(&mut self, size: usize) {
        self.bytes.resize(size, 0);
        self.shadow.resize(size, ByteShadow::default());
        self.epoch += 1;
        self.base = self.epoch;
    }

    #[inline(always)]
    fn check_range(&self, offset: u64, len: usize, align: u64) -> Result<usize, Fault> {
        if offset % align != 0 {
            return Err(Fault::new(
                FaultKind::Misaligned,
                format!("shared address {offset:#x} is not aligned to {align} bytes"),
            ));
        }
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.bytes.len() as u64 => Ok(offset as usize),
            _ => Err(Fault::new(
                FaultKind::IllegalAddress,
                format!(
                    "shared access of {len} bytes at {offset:#x}, past the CTA's {} bytes of shared memory",
                    self.bytes.len()
                ),
            )),
        }
    }

    /// Reads `out.len()` bytes at `offset` for `warp`.
    #[inline]
    pub fn load(&mut self, offset: u64, out: &mut [u8], align: u64, warp: u16) -> Result<(), Fault> {
        let o = self.check_range(offset, out.len(), align)?;
        let (epoch, base) = (self.epoch, self.base);
        for (k, s) in self.shadow[o..o + out.len()].iter_mut().enumerate() {
            if self.check_written && s.write_epoch < base {
                return Err(Fault::new(
                    FaultKind::UninitializedRead,
                    format!("read of never-written shared memory at offset {:#x}", o + k),
                ));
            }
            if self.check_races {
                if s.write_epoch == epoch && s.write_warp != warp {
                    return Err(race(o + k, "read", warp, "written", s.write_warp));
                }
                if s.read_epoch != epoch {
                    s.read_epoch = epoch;
                    s.read_warp = warp;
                } else if s.read_warp != warp {
                    s.read_warp = MANY;
                }
            }
        }
        // SAFETY: `o .. o + len` is inside `bytes` (check_range) and `out` holds `len` bytes.
        unsafe { crate::memory::copy_small(self.bytes.as_ptr().add(o), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Writes `data` at `offset` for `warp`.
    #[inline]
    pub fn store(&mut self, offset: u64, data: &[u8], align: u64, warp: u16) -> Result<(), Fault> {
        let o = self.check_range(offset, data.len(), align)?;
        let epoch = self.epoch;
        for (k, s) in self.shadow[o..o + data.len()].iter_mut().enumerate() {
            if self.check_races {
                if s.write_epoch == epoch && s.write_warp != warp {
                    return Err(race(o + k, "written", warp, "written", s.write_warp));
                }
                if s.read_epoch == epoch && s.read_warp != warp {
                    return Err(race(o + k, "written", warp, "read", s.read_warp));
                }
            }
            s.write_epoch = epoch;
            s.write_warp = warp;
        }
        // SAFETY: `o .. o + len` is inside `bytes` (check_range) and `data` holds `len` bytes.
        unsafe { crate::memory::copy_small(data.as_ptr(), self.bytes.as_mut_ptr().add(o), data.len()) };
        Ok(())
    }

    /// The `len` bytes at `offset` for an atomic read-modify-write by `warp`: checked like a
    /// load (bounds, alignment, initialisation) and recorded as a write, but exempt from the
    /// race checks, since atomics of several warps on one word need no barrier between them.
    pub fn atomic(&mut self, offset: u64, len: usize, align: u64, warp: u16) -> Result<&mut [u8], Fault> {
        let o = self.check_range(offset, len, align)?;
        let (epoch, base) = (self.epoch, self.base);
        for (k, s) in self.shadow[o..o + len].iter_mut().enumerate() {
            if self.check_written && s.write_epoch < base {
                return Err(Fault::new(
                    FaultKind::UninitializedRead,
                    format!("atomic on never-written shared memory at offset {:#x}", o + k),
                ));
            }
            s.write_epoch = epoch;
            s.write_warp = warp;
        }
        Ok(&mut self.bytes[o..o + len])
    }
}

fn race(offset: usize, what: &str, warp: u16, other: &str, other_warp: u16) -> Fault {
    let who = if other_warp == MANY { "other warps".to_owned() } else { format!("warp {other_warp}") };
    Fault::new(
        FaultKind::SharedRace,
        format!(
            "shared-memory race at offset {offset:#x}: {what} by warp {warp} after being {other} by {who} \
             with no barrier between"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn races_between_warps_within_an_interval() {
        let mut s = Shared::new(64, true, true);
        s.store(0, &[1, 2, 3, 4], 4, 0).unwrap();
        let mut b = [0u8; 4];
        s.load(0, &mut b, 4, 0).unwrap();
        assert_eq!(s.load(0, &mut b, 4, 1).unwrap_err().kind, FaultKind::SharedRace);
        s.epoch += 1;
        s.load(0, &mut b, 4, 1).unwrap();
        s.load(0, &mut b, 4, 2).unwrap();
        let e = s.store(2, &[9], 1, 1).unwrap_err();
        assert!(e.message.contains("other warps"), "{}", e.message);
    }

    #[test]
    fn unwritten_and_out_of_range() {
        let mut s = Shared::new(16, true, true);
        let mut b = [0u8; 4];
        assert_eq!(s.load(8, &mut b, 4, 0).unwrap_err().kind, FaultKind::UninitializedRead);
        assert_eq!(s.load(16, &mut b, 4, 0).unwrap_err().kind, FaultKind::IllegalAddress);
        assert_eq!(s.store(2, &b, 4, 0).unwrap_err().kind, FaultKind::Misaligned);
    }
}
