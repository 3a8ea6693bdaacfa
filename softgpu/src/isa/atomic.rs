//! Atomic read-modify-writes: `atom` (returns the old value) and `red` (does not), on
//! `.global`, `.shared` and generic addresses.
//!
//! Semantics from the PTX ISA, "Parallel Synchronization and Communication Instructions:
//! atom / red": `inc(r, s) = r >= s ? 0 : r + 1`, `dec(r, s) = (r == 0 || r > s) ? s : r - 1`,
//! `cas(r, s, t) = r == s ? t : r`, `exch(r, s) = s`; float `.add` rounds to nearest even,
//! and `atom.add.f32` on global memory flushes subnormal inputs and results to
//! sign-preserving zero while on shared memory it keeps them. The `.sem` and `.scope`
//! qualifiers (and cache hints) change nothing in a sequentially consistent interpreter and are
//! accepted and ignored.
//!
//! Global atomics are host atomics (CTAs run on several host threads): a compare-and-swap
//! loop on the allocation's bytes. Shared memory belongs to one CTA, run by one host thread,
//! so a shared atomic is a plain read-modify-write (exempt from the race check). The lanes of
//! one instruction are applied in lane order.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use crate::exec::{Cx, banks};
use crate::fault::{Fault, FaultKind};
use crate::memory::{LOCAL_WINDOW, WINDOW_SIZE};
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{Class, ExecFn, Inst, Kind, MemSpace, Opnd};
use crate::ptx::Space;

const ADD: u8 = 0;
const MIN: u8 = 1;
const MAX: u8 = 2;
const INC: u8 = 3;
const DEC: u8 = 4;
const AND: u8 = 5;
const OR: u8 = 6;
const XOR: u8 = 7;
const EXCH: u8 = 8;
const CAS: u8 = 9;

const OPS: [&str; 10] = ["add", "min", "max", "inc", "dec", "and", "or", "xor", "exch", "cas"];

/// Operand types.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Ty {
    B16,
    U32,
    S32,
    B32,
    U64,
    S64,
    B64,
    F32,
    F64,
    F16,
    Bf16,
    F16x2,
    Bf16x2,
}

impl Ty {
    fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "b16" => Ty::B16,
            "u32" => Ty::U32,
            "s32" => Ty::S32,
            "b32" => Ty::B32,
            "u64" => Ty::U64,
            "s64" => Ty::S64,
            "b64" => Ty::B64,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "f16" => Ty::F16,
            "bf16" => Ty::Bf16,
            "f16x2" => Ty::F16x2,
            "bf16x2" => Ty::Bf16x2,
            _ => return None,
        })
    }

    fn from_u8(v: u8) -> Ty {
        const ALL: [Ty; 13] = [
            Ty::B16,
            Ty::U32,
            Ty::S32,
            Ty::B32,
            Ty::U64,
            Ty::S64,
            Ty::B64,
            Ty::F32,
            Ty::F64,
            Ty::F16,
            Ty::Bf16,
            Ty::F16x2,
            Ty::Bf16x2,
        ];
        ALL[v as usize]
    }

    fn width(self) -> usize {
        match self {
            Ty::B16 | Ty::F16 | Ty::Bf16 => 2,
            Ty::U64 | Ty::S64 | Ty::B64 | Ty::F64 => 8,
            _ => 4,
        }
    }
}

/// Whether `op` takes type `ty`, as the ISA lists them.
fn valid(op: u8, ty: Ty) -> bool {
    use Ty::*;
    match op {
        ADD => matches!(ty, U32 | S32 | U64 | S64 | F32 | F64 | F16 | Bf16 | F16x2 | Bf16x2),
        MIN | MAX => matches!(ty, U32 | S32 | U64 | S64),
        INC | DEC => ty == U32,
        AND | OR | XOR | EXCH => matches!(ty, B32 | B64),
        _ => matches!(ty, B16 | B32 | B64),
    }
}

/// `aux`: op (bits 0-7), type (bits 8-15).
pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    let returns = match spec.base {
        "atom" => true,
        "red" => false,
        _ => return Ok(None),
    };
    if spec.mods.iter().any(|m| m.starts_with('v') && m[1..].parse::<u32>().is_ok()) {
        return Err(format!("vector {} is not supported", spec.base));
    }
    let op =
        OPS.iter().position(|o| spec.has(o)).ok_or_else(|| format!("{} needs an operation", spec.base))?
            as u8;
    let tys = spec.types();
    let [tyname] = tys[..] else { return Err(format!("{} needs one type", spec.base)) };
    let ty = Ty::parse(tyname)
        .ok_or_else(|| format!("{}.{} does not take .{tyname}", spec.base, OPS[op as usize]))?;
    if !valid(op, ty) {
        return Err(format!("{}.{} does not take .{tyname}", spec.base, OPS[op as usize]));
    }
    if matches!(ty, Ty::F16 | Ty::Bf16 | Ty::F16x2 | Ty::Bf16x2) && !spec.has("noftz") {
        return Err(format!("{}.add.{tyname} needs .noftz", spec.base));
    }
    if !returns && op == CAS {
        return Err("red has no .cas".into());
    }
    let space = if spec.has("global") {
        Some(Space::Global)
    } else if spec.mods.iter().any(|m| *m == "shared" || m.starts_with("shared::")) {
        Some(Space::Shared)
    } else {
        None
    };
    let mut operands = spec.operands;
    if spec.has("L2::cache_hint") {
        operands = operands.split_last().map_or(operands, |(_, r)| r);
    }
    let (d, rest) =
        if returns { (cx.opnd(spec.operand(0)?)?, &operands[1..]) } else { (Opnd::Sink, operands) };
    let want = if op == CAS { 3 } else { 2 };
    if rest.len() != want {
        return Err(format!(
            "{}.{} takes {} operands after the destination",
            spec.base, OPS[op as usize], want
        ));
    }
    let (space, addr) = cx.mem(&rest[0], space)?;
    let float = matches!(ty, Ty::F32 | Ty::F64).then_some(tyname);
    let mut src = |o| match float {
        Some(t) => cx.opnd_typed(o, t),
        None => cx.opnd(o),
    };
    let b = src(&rest[1])?;
    let c = if op == CAS { cx.opnd(&rest[2])? } else { Opnd::Imm(0) };
    let f: ExecFn = match space {
        MemSpace::Global => atom_global,
        MemSpace::Shared => atom_shared,
        MemSpace::Generic => atom_generic,
        _ => return Err(format!("{} is only for global and shared memory", spec.base)),
    };
    let class = if space == MemSpace::Shared { Class::SharedMem } else { Class::GlobalMem };
    Ok(Some(
        Inst::new(Kind::Plain(f), vec![d, b, c])
            .with_addr(space, addr)
            .with_aux(op as u64 | (ty as u64) << 8)
            .with_class(class),
    ))
}

/// A subnormal f32 flushed to zero of the same sign.
fn flush(x: u32) -> u32 {
    if x & 0x7f80_0000 == 0 { x & 0x8000_0000 } else { x }
}

/// The sum of two f16 (`BF16`: bf16) values rounded to nearest even. Adding in f32 and
/// rounding once more is exact: f32 has more than twice the precision plus two bits, so the
/// double rounding cannot differ from a single one.
fn add_half<const BF16: bool>(x: u16, y: u16) -> u16 {
    if BF16 {
        let s = half::bf16::from_bits(x).to_f32() + half::bf16::from_bits(y).to_f32();
        half::bf16::from_f32(s).to_bits()
    } else {
        let s = half::f16::from_bits(x).to_f32() + half::f16::from_bits(y).to_f32();
        half::f16::from_f32(s).to_bits()
    }
}

/// The value an atomic stores, given the old value (zero-extended from the type's width) and
/// the operands; `ftz` flushes f32 subnormals (global `atom.add.f32`).
fn apply(op: u8, ty: Ty, old: u64, b: u64, c: u64, ftz: bool) -> u64 {
    let w = ty.width();
    let mask = if w == 8 { u64::MAX } else { (1u64 << (8 * w)) - 1 };
    let (b, c) = (b & mask, c & mask);
    let r = match (op, ty) {
        (ADD, Ty::F32) => {
            let f = |x: u32| if ftz { flush(x) } else { x };
            f((f32::from_bits(f(old as u32)) + f32::from_bits(f(b as u32))).to_bits()) as u64
        }
        (ADD, Ty::F64) => (f64::from_bits(old) + f64::from_bits(b)).to_bits(),
        (ADD, Ty::F16) => add_half::<false>(old as u16, b as u16) as u64,
        (ADD, Ty::Bf16) => add_half::<true>(old as u16, b as u16) as u64,
        (ADD, Ty::F16x2) => {
            add_half::<false>(old as u16, b as u16) as u64
                | (add_half::<false>((old >> 16) as u16, (b >> 16) as u16) as u64) << 16
        }
        (ADD, Ty::Bf16x2) => {
            add_half::<true>(old as u16, b as u16) as u64
                | (add_half::<true>((old >> 16) as u16, (b >> 16) as u16) as u64) << 16
        }
        (ADD, _) => old.wrapping_add(b),
        (MIN, Ty::S32) => (old as i32).min(b as i32) as u32 as u64,
        (MAX, Ty::S32) => (old as i32).max(b as i32) as u32 as u64,
        (MIN, Ty::S64) => (old as i64).min(b as i64) as u64,
        (MAX, Ty::S64) => (old as i64).max(b as i64) as u64,
        (MIN, _) => old.min(b),
        (MAX, _) => old.max(b),
        (INC, _) => {
            if old >= b {
                0
            } else {
                old + 1
            }
        }
        (DEC, _) => {
            if old == 0 || old > b {
                b
            } else {
                old - 1
            }
        }
        (AND, _) => old & b,
        (OR, _) => old | b,
        (XOR, _) => old ^ b,
        (EXCH, _) => b,
        _ => {
            if old == b {
                c
            } else {
                old
            }
        }
    };
    r & mask
}

/// One lane's atomic on global memory at `addr`; returns the old value.
fn global_rmw(cx: &mut Cx<'_>, addr: u64, op: u8, ty: Ty, b: u64, c: u64) -> Result<u64, Fault> {
    let w = ty.width();
    let (alloc, off) = cx.global.locate(addr, w as u64, w as u64)?;
    if cx.check_written
        && let Some(bad) = alloc.first_unwritten(off, w as u64)
    {
        return Err(Fault::new(
            FaultKind::UninitializedRead,
            format!(
                "atomic on never-written device memory at {:#x} (byte {bad} of {alloc:?})",
                alloc.base + bad
            ),
        ));
    }
    let ftz = ty == Ty::F32;
    let next = |old: u64| apply(op, ty, old, b, c, ftz);
    // SAFETY: `locate` checked that the `w` bytes lie inside the allocation and are aligned
    // to `w`; the allocation is 8-aligned host memory that outlives the launch, and every
    // concurrent access to it during a launch goes through atomics or racy plain copies, as
    // on the device.
    let old = unsafe {
        let p = alloc.host_ptr().add(off as usize);
        match w {
            2 => {
                let a = AtomicU16::from_ptr(p.cast());
                a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| Some(next(o as u64) as u16))
                    .unwrap_or_else(|o| o) as u64
            }
            4 => {
                let a = AtomicU32::from_ptr(p.cast());
                a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| Some(next(o as u64) as u32))
                    .unwrap_or_else(|o| o) as u64
            }
            _ => {
                let a = AtomicU64::from_ptr(p.cast());
                a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| Some(next(o))).unwrap_or_else(|o| o)
            }
        }
    };
    alloc.mark_written(off, w as u64);
    cx.counters.global_bytes += w as u64;
    Ok(old)
}

/// One lane's atomic on shared memory at `offset`; returns the old value.
fn shared_rmw(cx: &mut Cx<'_>, offset: u64, op: u8, ty: Ty, b: u64, c: u64) -> Result<u64, Fault> {
    let w = ty.width();
    let bytes = cx.shared.atomic(offset, w, w as u64, cx.warp)?;
    let mut buf = [0u8; 8];
    buf[..w].copy_from_slice(bytes);
    let old = u64::from_le_bytes(buf);
    let new = apply(op, ty, old, b, c, false);
    bytes.copy_from_slice(&new.to_le_bytes()[..w]);
    Ok(old)
}

fn decode_aux(inst: &Inst) -> (u8, Ty) {
    (inst.aux as u8, Ty::from_u8((inst.aux >> 8) as u8))
}

fn atom_global(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let (op, ty) = decode_aux(inst);
    let [d, b, c] = [inst.ops[0], inst.ops[1], inst.ops[2]];
    for l in cx.lanes() {
        let a = cx.address(inst, l);
        let old = global_rmw(cx, a, op, ty, cx.get(b, l), cx.get(c, l)).map_err(|f| f.at_lane(l))?;
        cx.set(d, l, old);
    }
    Ok(())
}

fn atom_shared(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let (op, ty) = decode_aux(inst);
    let [d, b, c] = [inst.ops[0], inst.ops[1], inst.ops[2]];
    let mut offsets = [0u64; 32];
    for l in cx.lanes() {
        let a = cx.address(inst, l);
        offsets[l] = a;
        let old = shared_rmw(cx, a, op, ty, cx.get(b, l), cx.get(c, l)).map_err(|f| f.at_lane(l))?;
        cx.set(d, l, old);
    }
    if cx.count_banks {
        banks::record(cx.counters, &offsets, cx.mask, ty.width() as u32);
    }
    Ok(())
}

/// A generic address: shared if it falls in the shared window, global otherwise (an atomic on
/// local memory is an error).
fn atom_generic(cx: &mut Cx<'_>, inst: &Inst) -> Result<(), Fault> {
    let (op, ty) = decode_aux(inst);
    let [d, b, c] = [inst.ops[0], inst.ops[1], inst.ops[2]];
    let mut offsets = [0u64; 32];
    let mut smask = 0u32;
    for l in cx.lanes() {
        let a = cx.address(inst, l);
        let (bv, cv) = (cx.get(b, l), cx.get(c, l));
        let old = if let Some(o) = banks::shared_offset(MemSpace::Generic, a) {
            offsets[l] = o;
            smask |= 1 << l;
            shared_rmw(cx, o, op, ty, bv, cv)
        } else if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&a) {
            Err(Fault::new(FaultKind::IllegalAddress, format!("atomic on the local-memory address {a:#x}")))
        } else {
            global_rmw(cx, a, op, ty, bv, cv)
        }
        .map_err(|f| f.at_lane(l))?;
        cx.set(d, l, old);
    }
    if cx.count_banks {
        banks::record(cx.counters, &offsets, smask, ty.width() as u32);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inc_dec_wrap_as_documented() {
        assert_eq!(apply(INC, Ty::U32, 4, 5, 0, false), 5);
        assert_eq!(apply(INC, Ty::U32, 5, 5, 0, false), 0);
        assert_eq!(apply(INC, Ty::U32, 9, 5, 0, false), 0);
        assert_eq!(apply(DEC, Ty::U32, 0, 5, 0, false), 5);
        assert_eq!(apply(DEC, Ty::U32, 7, 5, 0, false), 5);
        assert_eq!(apply(DEC, Ty::U32, 3, 5, 0, false), 2);
    }

    #[test]
    fn signed_and_float_ops() {
        assert_eq!(apply(MIN, Ty::S32, 5, (-3i32) as u32 as u64, 0, false), (-3i32) as u32 as u64);
        assert_eq!(apply(MAX, Ty::U32, 5, (-3i32) as u32 as u64, 0, false), (-3i32) as u32 as u64);
        assert_eq!(apply(ADD, Ty::U32, 0xffff_ffff, 2, 0, false), 1);
        let sub = f32::from_bits(1).to_bits() as u64;
        assert_eq!(apply(ADD, Ty::F32, sub, sub, 0, true), 0, "global flushes subnormals");
        assert_eq!(apply(ADD, Ty::F32, sub, sub, 0, false), 2, "shared keeps them");
        assert_eq!(apply(CAS, Ty::B32, 7, 7, 9, false), 9);
        assert_eq!(apply(CAS, Ty::B32, 7, 8, 9, false), 7);
        let h = |x: f32| half::f16::from_f32(x).to_bits() as u64;
        assert_eq!(
            apply(ADD, Ty::F16x2, h(1.5) | h(-2.0) << 16, h(0.25) | h(0.5) << 16, 0, false),
            h(1.75) | h(-1.5) << 16
        );
    }
}
