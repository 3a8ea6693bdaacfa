//! Logic and shift instructions (PTX ISA §9.7.8 "Logic and Shift Instructions"): `and`, `or`,
//! `xor`, `not`, `cnot` on `.b16/.b32/.b64` (and the first four on `.pred`, whose sources may
//! be negated, `!%p`), `lop3.b32` (with the optional `.or`/`.and` predicate result), `shl`,
//! `shr` (`.b`/`.u` fill with zeros, `.s` with the sign) and the funnel shift `shf.l`/`shf.r`
//! with `.wrap` or `.clamp`.
//!
//! Shift amounts are the unsigned 32-bit value of `b`; amounts of the width or more give 0
//! (`shl`, `shr.u`/`.b`) or the sign fill (`shr.s`), as the PTX ISA specifies.

use crate::exec::Cx;
use crate::fault::Fault;
use crate::isa::int::{mask, operands};
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind, Opnd};
use crate::ptx::Operand;

const AND: u8 = 0;
const OR: u8 = 1;
const XOR: u8 = 2;

/// A predicate source that may be negated (`!%p`): the register and the negation bit.
pub(crate) fn pred_source(op: &Operand, cx: &mut DecodeCx<'_>) -> Result<(Opnd, u64), String> {
    match op {
        Operand::Not(name) => {
            let r = cx.reg_slot(name).ok_or_else(|| format!("unknown predicate `{name}`"))?;
            Ok((Opnd::Reg(r), 1))
        }
        other => Ok((cx.opnd(other)?, 0)),
    }
}

fn width(ty: &str) -> Option<u32> {
    Some(match ty {
        "b16" | "u16" | "s16" => 16,
        "b32" | "u32" | "s32" => 32,
        "b64" | "u64" | "s64" => 64,
        _ => return None,
    })
}

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    if !matches!(spec.base, "and" | "or" | "xor" | "not" | "cnot" | "lop3" | "shl" | "shr" | "shf") {
        return Ok(None);
    }
    let ty = spec.ty()?;
    if ty == "pred" {
        return decode_pred(spec, cx).map(Some);
    }
    let w = width(ty).ok_or_else(|| format!("`{}` does not take .{ty}", spec.base))?;
    let typed_ok = match spec.base {
        "and" | "or" | "xor" | "not" | "cnot" | "shl" => ty.starts_with('b'),
        "lop3" | "shf" => ty == "b32",
        _ => true,
    };
    if !typed_ok {
        return Err(format!("`{}` does not take .{ty}", spec.base));
    }
    macro_rules! by_w {
        ($f:ident $(, $c:expr)*) => {
            match w {
                16 => $f::<16 $(, $c)*> as ExecFn,
                32 => $f::<32 $(, $c)*> as ExecFn,
                _ => $f::<64 $(, $c)*> as ExecFn,
            }
        };
    }
    let (f, n): (ExecFn, usize) = match spec.base {
        "and" => (by_w!(logic, AND), 3),
        "or" => (by_w!(logic, OR), 3),
        "xor" => (by_w!(logic, XOR), 3),
        "not" => (by_w!(not), 2),
        "cnot" => (by_w!(cnot), 2),
        "shl" => (by_w!(shl), 3),
        "shr" if ty.starts_with('s') => (by_w!(shr_s), 3),
        "shr" => (by_w!(shr_u), 3),
        "shf" => {
            let (l, r) = (spec.has("l"), spec.has("r"));
            let (wrap, clamp) = (spec.has("wrap"), spec.has("clamp"));
            if l == r || wrap == clamp {
                return Err("`shf` needs one of .l/.r and one of .wrap/.clamp".into());
            }
            let f: ExecFn = match (l, clamp) {
                (true, false) => shf::<true, false>,
                (true, true) => shf::<true, true>,
                (false, false) => shf::<false, false>,
                (false, true) => shf::<false, true>,
            };
            (f, 4)
        }
        _ => return decode_lop3(spec, cx).map(Some),
    };
    Ok(Some(Inst::new(Kind::Plain(f), operands(spec, cx, n)?)))
}

/// `and/or/xor/not.pred`: aux bit 0 negates `a`, bit 1 negates `b`.
fn decode_pred(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let f: ExecFn = match spec.base {
        "and" => pred_logic::<AND>,
        "or" => pred_logic::<OR>,
        "xor" => pred_logic::<XOR>,
        "not" => pred_not,
        other => return Err(format!("`{other}` does not take .pred")),
    };
    let n = if spec.base == "not" { 2 } else { 3 };
    if spec.operands.len() != n {
        return Err(format!("expected {n} operands, found {}", spec.operands.len()));
    }
    let d = cx.opnd(&spec.operands[0])?;
    let mut ops = vec![d];
    let mut aux = 0;
    for (k, o) in spec.operands[1..].iter().enumerate() {
        let (op, neg) = pred_source(o, cx)?;
        ops.push(op);
        aux |= neg << k;
    }
    Ok(Inst::new(Kind::Plain(f), ops).with_aux(aux))
}

fn pred_logic<const OP: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let (na, nb) = (i.aux & 1, i.aux >> 1 & 1);
    cx.map2(i, |a, b| {
        let (a, b) = ((a ^ na) & 1, (b ^ nb) & 1);
        match OP {
            AND => a & b,
            OR => a | b,
            _ => a ^ b,
        }
    });
    Ok(())
}

fn pred_not(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let na = i.aux & 1;
    cx.map1(i, |a| (a ^ na ^ 1) & 1);
    Ok(())
}

fn logic<const W: u32, const OP: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| {
        (match OP {
            AND => a & b,
            OR => a | b,
            _ => a ^ b,
        }) & mask(W)
    });
    Ok(())
}

fn not<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| !a & mask(W));
    Ok(())
}

/// `cnot`: 1 if `a` is zero, else 0.
fn cnot<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (a & mask(W) == 0) as u64);
    Ok(())
}

fn shl<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| {
        let n = b & 0xffff_ffff;
        if n >= W as u64 { 0 } else { a << n & mask(W) }
    });
    Ok(())
}

fn shr_u<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| {
        let n = b & 0xffff_ffff;
        if n >= W as u64 { 0 } else { (a & mask(W)) >> n }
    });
    Ok(())
}

fn shr_s<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| {
        let n = (b & 0xffff_ffff).min(W as u64 - 1);
        let v = ((a << (64 - W)) as i64) >> (64 - W);
        (v >> n) as u64 & mask(W)
    });
    Ok(())
}

/// `shf.l`/`shf.r`: the 64-bit value `{b, a}` shifted by `c` (clamped to 32, or taken mod
/// 32); `.l` keeps the high word, `.r` the low word.
fn shf<const LEFT: bool, const CLAMP: bool>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| {
        let c = c & 0xffff_ffff;
        let n = if CLAMP { c.min(32) } else { c & 31 };
        let v = (b & 0xffff_ffff) << 32 | a & 0xffff_ffff;
        if LEFT { (v << n) >> 32 } else { (v >> n) & 0xffff_ffff }
    });
    Ok(())
}

/// `lop3.b32 d, a, b, c, immLut` and `lop3.BoolOp.b32 d|p, a, b, c, immLut, q`. aux: the
/// table (bits 0..8), the bool op (bits 8..10: 0 none, 1 and, 2 or), `!q` (bit 10).
fn decode_lop3(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let bool_op = if spec.has("and") {
        1
    } else if spec.has("or") {
        2
    } else {
        0
    };
    let want = if bool_op == 0 { 5 } else { 6 };
    if spec.operands.len() != want {
        return Err(format!("expected {want} operands, found {}", spec.operands.len()));
    }
    let mut ops = Vec::with_capacity(6);
    match (&spec.operands[0], bool_op) {
        (Operand::Pair(d, p), 1 | 2) => {
            ops.push(cx.opnd(&Operand::Name(d.clone()))?);
            ops.push(cx.opnd(&Operand::Name(p.clone()))?);
        }
        (o, 0) => {
            ops.push(cx.opnd(o)?);
            ops.push(Opnd::Sink);
        }
        _ => return Err("`lop3` with a bool op needs a `d|p` destination".into()),
    }
    for o in &spec.operands[1..4] {
        ops.push(cx.opnd(o)?);
    }
    let Operand::Int(lut) = spec.operands[4] else {
        return Err("`lop3` needs an immediate lookup table".into());
    };
    if lut > 0xff {
        return Err(format!("`lop3` table {lut:#x} is not in 0..=255"));
    }
    let mut aux = lut | (bool_op as u64) << 8;
    if bool_op != 0 {
        let (q, neg) = pred_source(&spec.operands[5], cx)?;
        ops.push(q);
        aux |= neg << 10;
    }
    Ok(Inst::new(Kind::Plain(lop3), ops).with_aux(aux))
}

/// The function of `a`, `b`, `c` whose truth table is `lut`: row `4a + 2b + c` of the table
/// (the PTX ISA's constants `a = 0xF0`, `b = 0xCC`, `c = 0xAA`).
#[inline(always)]
pub(crate) fn lut3(lut: u64, a: u64, b: u64, c: u64) -> u64 {
    let mut r = 0;
    for k in 0..8 {
        if lut >> k & 1 != 0 {
            let x = if k & 4 != 0 { a } else { !a };
            let y = if k & 2 != 0 { b } else { !b };
            let z = if k & 1 != 0 { c } else { !c };
            r |= x & y & z;
        }
    }
    r
}

fn lop3(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let lut = i.aux & 0xff;
    let bool_op = i.aux >> 8 & 3;
    let nq = i.aux >> 10 & 1;
    for l in cx.lanes() {
        let d = lut3(lut, cx.get(i.ops[2], l), cx.get(i.ops[3], l), cx.get(i.ops[4], l)) & 0xffff_ffff;
        cx.set(i.ops[0], l, d);
        if bool_op != 0 {
            let q = (cx.get(i.ops[5], l) ^ nq) & 1;
            let t = (d != 0) as u64;
            cx.set(i.ops[1], l, if bool_op == 1 { t & q } else { t | q });
        }
    }
    Ok(())
}
