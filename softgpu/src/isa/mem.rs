//! Loads and stores: `ld`, `ld.global.nc`, `ldu`, `st` in every state space, scalar and
//! vector (`.v2`, `.v4`), and the no-ops `prefetch`, `membar` and `fence`.
//!
//! PTX ISA: an access must be aligned to its total size (a `.v4.u32` to 16 bytes); a value
//! narrower than its register is zero- or sign-extended by the load's type (`ld.s16` into a
//! 32-bit register sign-extends) and truncated by the store.
//!
//! Shared-memory accesses also feed the bank-conflict counters, once per warp instruction.

use crate::exec::{Cx, banks};
use crate::fault::Fault;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{Class, Inst, Kind, MemSpace};
use crate::ptx::{Space, type_size};

/// The state space named by an opcode's modifiers, `None` for generic.
pub fn space_of(spec: &OpSpec<'_>) -> Option<Space> {
    spec.mods.iter().find_map(|m| Space::from_directive(&format!(".{m}")))
}

/// The profile class of an access to `space`.
pub fn class_of(space: MemSpace) -> Class {
    match space {
        MemSpace::Shared => Class::SharedMem,
        MemSpace::Global | MemSpace::Generic => Class::GlobalMem,
        MemSpace::Local | MemSpace::KernelParam => Class::Other,
    }
}

/// `aux` of a load or store: element size in bytes (low byte), vector count (next byte),
/// sign-extend flag (bit 16).
fn aux(size: u32, count: u32, signed: bool) -> u64 {
    size as u64 | (count as u64) << 8 | (signed as u64) << 16
}

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    match spec.base {
        "ld" | "ldu" | "st" => {}
        "prefetch" | "prefetchu" | "membar" | "fence" => {
            return Ok(Some(Inst::new(Kind::Plain(|_, _| Ok(())), vec![])));
        }
        _ => return Ok(None),
    }
    let ty = spec.ty()?;
    let size = type_size(ty).ok_or("bad type")?;
    let count = spec.vector();
    let signed = ty.starts_with('s');
    let is_load = spec.base != "st";
    let (value, address) =
        if is_load { (spec.operand(0)?, spec.operand(1)?) } else { (spec.operand(1)?, spec.operand(0)?) };
    let regs = cx.vector(value)?;
    if regs.len() != count as usize {
        return Err(format!("a .v{count} access needs {count} registers, found {}", regs.len()));
    }
    let (space, addr) = cx.mem(address, space_of(spec))?;
    let exec: fn(&mut Cx<'_>, &Inst) -> Result<(), Fault> = if is_load { load } else { store };
    let inst = Inst::new(Kind::Plain(exec), regs)
        .with_addr(space, addr)
        .with_aux(aux(size, count, signed))
        .with_class(class_of(space));
    Ok(Some(inst))
}

fn load(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let size = (inst.aux & 0xff) as usize;
    let count = (inst.aux >> 8 & 0xff) as usize;
    let signed = inst.aux >> 16 & 1 != 0;
    let total = size * count;
    let value_mask = if size >= 8 { u64::MAX } else { (1u64 << (8 * size)) - 1 };
    // 8 bytes of slack so each element is read as one u64 and masked, with no sized copy.
    let mut buf = [0u8; 64 + 8];
    let mut shared = SharedLanes::new(inst.space, cx.count_banks);
    for l in cx.lanes() {
        let a = cx.address(inst, l);
        shared.note(l, a);
        cx.load(inst.space, a, &mut buf[..total], total as u64, l).map_err(|f| f.at_lane(l))?;
        for (k, &d) in inst.ops.iter().enumerate() {
            let at = k * size;
            let mut v = u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes")) & value_mask;
            if signed && size < 8 {
                let shift = 64 - 8 * size as u32;
                v = ((v << shift) as i64 >> shift) as u64;
            }
            cx.set(d, l, v);
        }
    }
    shared.record(cx, total as u32);
    Ok(())
}

fn store(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let size = (inst.aux & 0xff) as usize;
    let count = (inst.aux >> 8 & 0xff) as usize;
    let total = size * count;
    // Each element is written as a whole u64 in increasing order (the next overwrites the
    // excess bytes; the last one's land in the slack), so no sized copy is needed.
    let mut buf = [0u8; 64 + 8];
    let mut shared = SharedLanes::new(inst.space, cx.count_banks);
    for l in cx.lanes() {
        for (k, &s) in inst.ops.iter().enumerate() {
            buf[k * size..k * size + 8].copy_from_slice(&cx.get(s, l).to_le_bytes());
        }
        let a = cx.address(inst, l);
        shared.note(l, a);
        cx.store(inst.space, a, &buf[..total], total as u64, l).map_err(|f| f.at_lane(l))?;
    }
    shared.record(cx, total as u32);
    Ok(())
}

/// The shared-memory offsets of one warp instruction's lanes, for bank-conflict counting
/// ([`crate::exec::banks`]): collected per lane, counted once per instruction.
pub struct SharedLanes {
    space: MemSpace,
    enabled: bool,
    addrs: [u64; 32],
    mask: u32,
}

impl SharedLanes {
    /// Lanes of an access to `space`, noted only when `enabled` (profiling).
    #[inline]
    pub fn new(space: MemSpace, enabled: bool) -> Self {
        SharedLanes { space, enabled, addrs: [0; 32], mask: 0 }
    }

    /// Notes lane `l`'s address `addr` (in the instruction's space) if it is shared memory.
    #[inline(always)]
    pub fn note(&mut self, l: usize, addr: u64) {
        if self.enabled
            && matches!(self.space, MemSpace::Shared | MemSpace::Generic)
            && let Some(o) = banks::shared_offset(self.space, addr)
        {
            self.addrs[l] = o;
            self.mask |= 1 << l;
        }
    }

    /// Adds the wavefronts of the noted lanes' accesses of `size` bytes each.
    #[inline]
    pub fn record(&self, cx: &mut Cx<'_>, size: u32) {
        if self.mask != 0 {
            banks::record(cx.counters, &self.addrs, self.mask, size);
        }
    }
}
