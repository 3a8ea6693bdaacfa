//! A CTA's shared memory with the sanitizer's shadow: which bytes were written, and for race
//! detection the warp and barrier interval of each byte's last write and last read.
//!
//! Two threads touching a byte within one barrier interval, at least one of them writing, is a
//! race: threads of different warps always, threads of one warp unless a warp collective
//! (`shfl.sync`, `vote.sync`, `bar.warp.sync`, `mma`, `ldmatrix`, ...) ordered them, which each
//! warp counts (its `sync`).

use crate::fault::{Fault, FaultKind};

/// Shadow of one shared byte. Epochs count barrier intervals across every CTA this buffer has
/// served, so an epoch before the current CTA's first (`Shared::base`) means "not in this
/// CTA" and nothing needs clearing between CTAs.
#[derive(Clone, Copy, Default)]
struct ByteShadow {
    write_epoch: u32,
    read_epoch: u32,
    /// The writer's warp-collective count when it wrote.
    write_sync: u32,
    /// The last reader's warp-collective count.
    read_sync: u32,
    write_warp: u16,
    /// The reading warp, or [`MANY`] when several warps read in `read_epoch`.
    read_warp: u16,
    write_lane: u8,
    /// The reading lane, or [`MANY_LANES`] when several lanes of the warp read at `read_sync`.
    read_lane: u8,
}

const MANY: u16 = u16::MAX;
const MANY_LANES: u8 = u8::MAX;

/// Who accesses shared memory: the thread (warp and lane) and its warp's collective count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accessor {
    pub warp: u16,
    pub lane: u8,
    pub sync: u32,
}

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

    /// Reads `out.len()` bytes at `offset` for thread `a`.
    #[inline]
    pub fn load(&mut self, offset: u64, out: &mut [u8], align: u64, a: Accessor) -> Result<(), Fault> {
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
                if s.write_epoch == epoch {
                    if s.write_warp != a.warp {
                        return Err(race(o + k, "read", a, "written", s.write_warp, None));
                    }
                    if s.write_lane != a.lane && s.write_sync == a.sync {
                        return Err(race(o + k, "read", a, "written", s.write_warp, Some(s.write_lane)));
                    }
                }
                if s.read_epoch != epoch {
                    (s.read_epoch, s.read_warp, s.read_lane, s.read_sync) = (epoch, a.warp, a.lane, a.sync);
                } else if s.read_warp != a.warp {
                    s.read_warp = MANY;
                } else if s.read_sync != a.sync {
                    // A collective ordered the earlier reads before this one.
                    (s.read_lane, s.read_sync) = (a.lane, a.sync);
                } else if s.read_lane != a.lane {
                    s.read_lane = MANY_LANES;
                }
            }
        }
        // SAFETY: `o .. o + len` is inside `bytes` (check_range) and `out` holds `len` bytes.
        unsafe { crate::memory::copy_small(self.bytes.as_ptr().add(o), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Writes `data` at `offset` for thread `a`.
    #[inline]
    pub fn store(&mut self, offset: u64, data: &[u8], align: u64, a: Accessor) -> Result<(), Fault> {
        let o = self.check_range(offset, data.len(), align)?;
        let epoch = self.epoch;
        for (k, s) in self.shadow[o..o + data.len()].iter_mut().enumerate() {
            if self.check_races {
                if s.write_epoch == epoch {
                    if s.write_warp != a.warp {
                        return Err(race(o + k, "written", a, "written", s.write_warp, None));
                    }
                    if s.write_lane != a.lane && s.write_sync == a.sync {
                        return Err(race(o + k, "written", a, "written", s.write_warp, Some(s.write_lane)));
                    }
                }
                if s.read_epoch == epoch {
                    if s.read_warp != a.warp {
                        return Err(race(o + k, "written", a, "read", s.read_warp, None));
                    }
                    if s.read_lane != a.lane && s.read_sync == a.sync {
                        return Err(race(o + k, "written", a, "read", s.read_warp, Some(s.read_lane)));
                    }
                }
            }
            (s.write_epoch, s.write_warp, s.write_lane, s.write_sync) = (epoch, a.warp, a.lane, a.sync);
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

fn race(
    offset: usize,
    what: &str,
    a: Accessor,
    other: &str,
    other_warp: u16,
    other_lane: Option<u8>,
) -> Fault {
    let who = match (other_warp, other_lane) {
        (MANY, _) => "other warps".to_owned(),
        (w, Some(MANY_LANES)) => format!("other lanes of warp {w}"),
        (w, Some(l)) => format!("lane {l} of warp {w}"),
        (w, None) => format!("warp {w}"),
    };
    let between = if other_lane.is_some() { "no barrier or warp collective" } else { "no barrier" };
    Fault::new(
        FaultKind::SharedRace,
        format!(
            "shared-memory race at offset {offset:#x}: {what} by lane {} of warp {} after being {other} by {who} \
             with {between} between",
            a.lane, a.warp
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lane `lane` of warp `warp` after `sync` warp collectives.
    fn at(warp: u16, lane: u8, sync: u32) -> Accessor {
        Accessor { warp, lane, sync }
    }

    #[test]
    fn races_between_warps_within_an_interval() {
        let mut s = Shared::new(64, true, true);
        s.store(0, &[1, 2, 3, 4], 4, at(0, 0, 0)).unwrap();
        let mut b = [0u8; 4];
        s.load(0, &mut b, 4, at(0, 0, 0)).unwrap();
        assert_eq!(s.load(0, &mut b, 4, at(1, 0, 0)).unwrap_err().kind, FaultKind::SharedRace);
        s.epoch += 1;
        s.load(0, &mut b, 4, at(1, 0, 0)).unwrap();
        s.load(0, &mut b, 4, at(2, 0, 0)).unwrap();
        let e = s.store(2, &[9], 1, at(1, 0, 0)).unwrap_err();
        assert!(e.message.contains("other warps"), "{}", e.message);
    }

    /// Two lanes of one warp conflict unless a warp collective came between their accesses.
    #[test]
    fn races_between_lanes_of_a_warp_without_a_collective() {
        let mut s = Shared::new(64, true, true);
        let mut b = [0u8; 4];
        s.store(0, &[1, 2, 3, 4], 4, at(0, 3, 0)).unwrap();
        let e = s.load(0, &mut b, 4, at(0, 5, 0)).unwrap_err();
        assert_eq!(e.kind, FaultKind::SharedRace);
        assert!(e.message.contains("lane 3 of warp 0"), "{}", e.message);
        // After a collective (sync 1) the same read is ordered; the writer may read its own.
        s.load(0, &mut b, 4, at(0, 5, 1)).unwrap();
        s.load(0, &mut b, 4, at(0, 3, 0)).unwrap();
        // Lanes 5 and 6 read at sync 1; lane 5 writing at sync 1 races with lane 6's read.
        s.load(4, &mut b, 4, at(0, 5, 1)).unwrap_err();
        s.store(8, &[7; 4], 4, at(0, 1, 1)).unwrap();
        s.load(8, &mut b, 4, at(0, 5, 2)).unwrap();
        s.load(8, &mut b, 4, at(0, 6, 2)).unwrap();
        let e = s.store(8, &[0], 1, at(0, 5, 2)).unwrap_err();
        assert!(e.message.contains("other lanes of warp 0"), "{}", e.message);
        s.store(8, &[0], 1, at(0, 5, 3)).unwrap();
    }

    #[test]
    fn unwritten_and_out_of_range() {
        let mut s = Shared::new(16, true, true);
        let mut b = [0u8; 4];
        assert_eq!(s.load(8, &mut b, 4, at(0, 0, 0)).unwrap_err().kind, FaultKind::UninitializedRead);
        assert_eq!(s.load(16, &mut b, 4, at(0, 0, 0)).unwrap_err().kind, FaultKind::IllegalAddress);
        assert_eq!(s.store(2, &b, 4, at(0, 0, 0)).unwrap_err().kind, FaultKind::Misaligned);
    }
}
