//! [`Cx`]: what an instruction sees while it runs on a warp's active lanes: the register file,
//! the memories and the warp's per-lane state, with the helpers the families share.

use super::counters::Counters;
use super::shared::{Accessor, Shared};
use crate::fault::{Fault, FaultKind};
use crate::memory::{LOCAL_WINDOW, MemoryView, SHARED_WINDOW, WINDOW_SIZE};
use crate::program::inst::{Inst, MemSpace, Opnd};

/// One pending `cp.async` copy of a lane: shared destination and the bytes read at issue.
#[derive(Clone, Copy, Debug)]
pub struct AsyncCopy {
    pub shared_offset: u64,
    pub len: u8,
    pub bytes: [u8; 16],
}

/// A lane's `cp.async` state: copies not yet committed, and committed groups, oldest first.
#[derive(Clone, Debug, Default)]
pub struct LaneAsync {
    pub pending: Vec<AsyncCopy>,
    pub groups: std::collections::VecDeque<Vec<AsyncCopy>>,
}

/// The execution context of one warp instruction.
pub struct Cx<'a> {
    /// The warp's registers: slot `r` of lane `l` at `r * 32 + l`.
    pub regs: &'a mut [u64],
    /// The lanes the instruction runs on.
    pub mask: u32,
    /// Per-lane carry flags (`CC.CF`) for `add.cc`/`addc` chains.
    pub carry: &'a mut u32,
    pub global: &'a MemoryView,
    pub shared: &'a mut Shared,
    /// The warp's local memory: lane `l` owns `local[l * local_bytes ..][.. local_bytes]`.
    pub local: &'a mut [u8],
    pub local_bytes: usize,
    pub params: &'a [u8],
    pub async_copies: &'a mut [LaneAsync; 32],
    pub counters: &'a mut Counters,
    /// The warp's index in its CTA.
    pub warp: u16,
    /// Warp collectives this warp has executed: they order its lanes' shared accesses.
    pub warp_sync: u32,
    /// Check that global loads read bytes that were written.
    pub check_written: bool,
    /// Count shared-memory wavefronts and bank conflicts (profiling only: it costs time).
    pub count_banks: bool,
    /// The index of the allocation this warp last touched (see `MemoryView::locate_near`).
    pub alloc_hint: &'a mut usize,
}

/// The set lanes of `mask`, ascending.
#[inline]
pub fn lanes(mut mask: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let l = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            l
        })
    })
}

impl Cx<'_> {
    /// The value of `op` in `lane`.
    #[inline(always)]
    pub fn get(&self, op: Opnd, lane: usize) -> u64 {
        match op {
            Opnd::Reg(r) => self.regs[r as usize * 32 + lane],
            Opnd::Imm(v) => v,
            Opnd::Sink => 0,
        }
    }

    /// Writes `v` to destination `op` of `lane` (a sink drops it).
    #[inline(always)]
    pub fn set(&mut self, op: Opnd, lane: usize, v: u64) {
        if let Opnd::Reg(r) = op {
            self.regs[r as usize * 32 + lane] = v;
        }
    }

    /// Lane `lane` of this warp as a shared-memory accessor.
    #[inline(always)]
    fn accessor(&self, lane: usize) -> Accessor {
        Accessor { warp: self.warp, lane: lane as u8, sync: self.warp_sync }
    }

    /// The active lanes.
    #[inline]
    pub fn lanes(&self) -> impl Iterator<Item = usize> + use<> {
        lanes(self.mask)
    }

    /// The address of `inst`'s memory operand in `lane`.
    #[inline]
    pub fn address(&self, inst: &Inst, lane: usize) -> u64 {
        let a = inst.addr.expect("a memory instruction has an address");
        let base = a.base.map_or(0, |r| self.regs[r as usize * 32 + lane]);
        base.wrapping_add(a.offset as u64)
    }

    /// Where a generic address points.
    #[inline(always)]
    fn resolve(space: MemSpace, addr: u64) -> (MemSpace, u64) {
        match space {
            MemSpace::Generic if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&addr) => {
                (MemSpace::Shared, addr - SHARED_WINDOW)
            }
            MemSpace::Generic if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&addr) => {
                (MemSpace::Local, addr - LOCAL_WINDOW)
            }
            MemSpace::Generic => (MemSpace::Global, addr),
            s => (s, addr),
        }
    }

    fn local_range(&self, addr: u64, len: usize, align: u64, lane: usize) -> Result<usize, Fault> {
        if addr % align != 0 {
            return Err(Fault::new(
                FaultKind::Misaligned,
                format!("local address {addr:#x} is not aligned to {align} bytes"),
            ));
        }
        if addr + len as u64 > self.local_bytes as u64 {
            return Err(Fault::new(
                FaultKind::IllegalAddress,
                format!(
                    "local access of {len} bytes at {addr:#x}, past the thread's {} bytes",
                    self.local_bytes
                ),
            ));
        }
        Ok(lane * self.local_bytes + addr as usize)
    }

    /// Loads `out.len()` bytes (aligned to `align`) from `addr` in `space` for `lane`.
    #[inline]
    pub fn load(
        &mut self,
        space: MemSpace,
        addr: u64,
        out: &mut [u8],
        align: u64,
        lane: usize,
    ) -> Result<(), Fault> {
        let (space, addr) = Self::resolve(space, addr);
        match space {
            MemSpace::Global | MemSpace::Generic => {
                self.counters.global_bytes += out.len() as u64;
                self.global.load(addr, out, align, self.check_written, self.alloc_hint)
            }
            MemSpace::Shared => self.shared.load(addr, out, align, self.accessor(lane)),
            MemSpace::Local => {
                let o = self.local_range(addr, out.len(), align, lane)?;
                out.copy_from_slice(&self.local[o..o + out.len()]);
                Ok(())
            }
            MemSpace::KernelParam => {
                let end = addr.checked_add(out.len() as u64).filter(|&e| e <= self.params.len() as u64);
                let Some(end) = end else {
                    return Err(Fault::new(
                        FaultKind::IllegalAddress,
                        format!(
                            "parameter read of {} bytes at {addr:#x}, past the {} parameter bytes",
                            out.len(),
                            self.params.len()
                        ),
                    ));
                };
                out.copy_from_slice(&self.params[addr as usize..end as usize]);
                Ok(())
            }
        }
    }

    /// Stores `data` (aligned to `align`) at `addr` in `space` for `lane`.
    #[inline]
    pub fn store(
        &mut self,
        space: MemSpace,
        addr: u64,
        data: &[u8],
        align: u64,
        lane: usize,
    ) -> Result<(), Fault> {
        let (space, addr) = Self::resolve(space, addr);
        match space {
            MemSpace::Global | MemSpace::Generic => {
                self.counters.global_bytes += data.len() as u64;
                self.global.store(addr, data, align, self.alloc_hint)
            }
            MemSpace::Shared => self.shared.store(addr, data, align, self.accessor(lane)),
            MemSpace::Local => {
                let o = self.local_range(addr, data.len(), align, lane)?;
                self.local[o..o + data.len()].copy_from_slice(data);
                Ok(())
            }
            MemSpace::KernelParam => {
                Err(Fault::new(FaultKind::IllegalInstruction, "kernel parameters are read-only"))
            }
        }
    }

    /// `ops[0] = f(ops[1])` on every active lane.
    #[inline(always)]
    pub fn map1(&mut self, inst: &Inst, f: impl Fn(u64) -> u64) {
        let [d, a] = [inst.ops[0], inst.ops[1]];
        for l in self.lanes() {
            let v = f(self.get(a, l));
            self.set(d, l, v);
        }
    }

    /// `ops[0] = f(ops[1], ops[2])` on every active lane.
    #[inline(always)]
    pub fn map2(&mut self, inst: &Inst, f: impl Fn(u64, u64) -> u64) {
        let [d, a, b] = [inst.ops[0], inst.ops[1], inst.ops[2]];
        for l in self.lanes() {
            let v = f(self.get(a, l), self.get(b, l));
            self.set(d, l, v);
        }
    }

    /// `ops[0] = f(ops[1], ops[2], ops[3])` on every active lane.
    #[inline(always)]
    pub fn map3(&mut self, inst: &Inst, f: impl Fn(u64, u64, u64) -> u64) {
        let [d, a, b, c] = [inst.ops[0], inst.ops[1], inst.ops[2], inst.ops[3]];
        for l in self.lanes() {
            let v = f(self.get(a, l), self.get(b, l), self.get(c, l));
            self.set(d, l, v);
        }
    }

    /// Like [`Cx::map2`], for operations that can fault (integer division by zero).
    #[inline(always)]
    pub fn try_map2(&mut self, inst: &Inst, f: impl Fn(u64, u64) -> Result<u64, Fault>) -> Result<(), Fault> {
        let [d, a, b] = [inst.ops[0], inst.ops[1], inst.ops[2]];
        for l in self.lanes() {
            let v = f(self.get(a, l), self.get(b, l)).map_err(|e| e.at_lane(l))?;
            self.set(d, l, v);
        }
        Ok(())
    }
}
