//! f32 and f64 arithmetic (PTX ISA 9.7.3, Floating-Point Instructions): `add`, `sub`, `mul`,
//! `fma`, `mad`, `div`, `abs`, `neg`, `min`, `max`, `copysign` and `testp`.
//!
//! Modifiers, per the ISA's Table 29: rounding `.rn .rz .rm .rp` (the default of
//! `add/sub/mul` is `.rn`; `fma` needs one; a `mad` without one is the legacy
//! `mad.rn`, 9.7.3.7), `.ftz` on f32 (sub-normal inputs and results become zeros of the same
//! sign), `.sat` on f32 `add/sub/mul/fma/mad` (clamp to [0, 1], NaN to +0). The arithmetic
//! itself is in [`arith`]; [`round`] is the exact rounding shared with the half-precision,
//! special-function and conversion families. `setp` is the comparison family's.

pub mod arith;
pub mod round;

use self::arith::{add32, add64, div32, div64, fma32, fma64, min_max, min_max_xorsign, mul32, mul64, sat32};
use self::round::{F32, F64, Fmt, Rnd};
use crate::exec::Cx;
use crate::fault::Fault;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind};

/// Instantiates a const-generic exec fn for a flags value known only at decode time.
macro_rules! mono {
    ($f:ident, $flags:expr; $($n:literal)*) => {
        match $flags {
            $($n => $f::<$n> as ExecFn,)*
            other => unreachable!("flags {other} out of range"),
        }
    };
}
pub(crate) use mono;

/// Flag bits of the f32 exec fns: the rounding code in bits 0-1 ([`Rnd::code`]).
pub(super) const FTZ: u8 = 4;
const SAT: u8 = 8;

#[inline(always)]
fn rnd(flags: u8) -> Rnd {
    Rnd::from_code(flags & 3)
}

/// An f32 operand as the instruction sees it (flushed under `.ftz`).
#[inline(always)]
pub(super) fn fin<const F: u8>(v: u64) -> f32 {
    let b = v as u32 as u64;
    f32::from_bits(if F & FTZ != 0 { F32.flush(b) } else { b } as u32)
}

/// An f32 result as written: flushed under `.ftz`, clamped under `.sat`.
#[inline(always)]
pub(super) fn fout<const F: u8>(x: f32) -> u64 {
    let x = if F & SAT != 0 { sat32(x) } else { x };
    let b = x.to_bits() as u64;
    if F & FTZ != 0 { F32.flush(b) } else { b }
}

fn add_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| fout::<F>(add32(fin::<F>(a), fin::<F>(b), rnd(F))));
    Ok(())
}

fn sub_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| fout::<F>(add32(fin::<F>(a), -fin::<F>(b), rnd(F))));
    Ok(())
}

fn mul_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| fout::<F>(mul32(fin::<F>(a), fin::<F>(b), rnd(F))));
    Ok(())
}

fn fma_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| fout::<F>(fma32(fin::<F>(a), fin::<F>(b), fin::<F>(c), rnd(F))));
    Ok(())
}

fn div_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| fout::<F>(div32(fin::<F>(a), fin::<F>(b), rnd(F))));
    Ok(())
}

/// `div.approx.f32`: `a * (1/b)` (PTX ISA 9.7.3.8); for 2^126 < |b| < 2^128 the reciprocal is
/// a zero, so the quotient is a sign-preserving zero, or NaN for an infinite `a`.
fn div_approx_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| {
        let (a, b) = (fin::<F>(a), fin::<F>(b));
        let r = if b.abs() > f32::from_bits(0x7e80_0000) { 0.0f32.copysign(b) } else { 1.0 / b };
        fout::<F>(a * r)
    });
    Ok(())
}

/// `div.full.f32`: full range, at most 2 ulp; the correctly rounded quotient is within that.
fn div_full_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| fout::<F>(fin::<F>(a) / fin::<F>(b)));
    Ok(())
}

#[inline(always)]
fn f64_of(v: u64) -> f64 {
    f64::from_bits(v)
}

fn add_f64<const R: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| add64(f64_of(a), f64_of(b), Rnd::from_code(R)).to_bits());
    Ok(())
}

fn sub_f64<const R: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| add64(f64_of(a), -f64_of(b), Rnd::from_code(R)).to_bits());
    Ok(())
}

fn mul_f64<const R: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| mul64(f64_of(a), f64_of(b), Rnd::from_code(R)).to_bits());
    Ok(())
}

fn fma_f64<const R: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| fma64(f64_of(a), f64_of(b), f64_of(c), Rnd::from_code(R)).to_bits());
    Ok(())
}

fn div_f64<const R: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| div64(f64_of(a), f64_of(b), Rnd::from_code(R)).to_bits());
    Ok(())
}

/// `abs`/`neg`: the sign bit only (a NaN stays a NaN: "unspecified NaN" for f32).
fn abs_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| fout::<F>(fin::<F>(a).abs()));
    Ok(())
}

fn neg_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| fout::<F>(-fin::<F>(a)));
    Ok(())
}

fn abs_f64(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| a & !F64.sign());
    Ok(())
}

fn neg_f64(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| a ^ F64.sign());
    Ok(())
}

/// Flag bits of `min`/`max`.
const MM_MAX: u8 = 1;
const MM_FTZ: u8 = 2;
const MM_NAN: u8 = 4;
const MM_XORSIGN: u8 = 8;
/// `.abs` with three inputs (sm_100).
const MM_ABS: u8 = 16;

#[inline(always)]
fn mm_in<const F: u8>(v: u64, f: Fmt) -> u64 {
    let v = v & (f.sign() << 1).wrapping_sub(1);
    let v = if F & MM_FTZ != 0 { f.flush(v) } else { v };
    if F & MM_ABS != 0 { v & !f.sign() } else { v }
}

#[inline(always)]
fn mm<const F: u8>(a: u64, b: u64, f: Fmt) -> u64 {
    if F & MM_XORSIGN != 0 {
        min_max_xorsign(a, b, f, F & MM_MAX != 0, F & MM_NAN != 0)
    } else {
        min_max(a, b, f, F & MM_MAX != 0, F & MM_NAN != 0)
    }
}

/// `min`/`max` of f32 (PTX ISA 9.7.3.11/12), two or three inputs.
fn minmax_f32<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    if i.ops.len() == 4 {
        cx.map3(i, |a, b, c| {
            mm::<F>(mm::<F>(mm_in::<F>(a, F32), mm_in::<F>(b, F32), F32), mm_in::<F>(c, F32), F32)
        });
    } else {
        cx.map2(i, |a, b| mm::<F>(mm_in::<F>(a, F32), mm_in::<F>(b, F32), F32));
    }
    Ok(())
}

fn minmax_f64<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| mm::<F>(a, b, F64));
    Ok(())
}

/// `copysign d, a, b`: the sign of `a` on the value of `b` (PTX ISA 9.7.3.2).
fn copysign_f32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| (a & F32.sign()) | (b & (F32.sign() - 1)));
    Ok(())
}

fn copysign_f64(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| (a & F64.sign()) | (b & !F64.sign()));
    Ok(())
}

/// `testp.op` (PTX ISA 9.7.3.1); zeros count as normal numbers.
fn testp<const OP: u8, const WIDE: bool>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let f = if WIDE { F64 } else { F32 };
    cx.map1(i, |a| {
        let a = if WIDE { a } else { a as u32 as u64 };
        let (nan, inf, sub) = (f.is_nan(a), f.is_inf(a), f.is_subnormal(a));
        (match OP {
            0 => !nan && !inf,
            1 => inf,
            2 => !nan,
            3 => nan,
            4 => !nan && !inf && !sub,
            _ => sub,
        }) as u64
    });
    Ok(())
}

const TESTP_OPS: &[&str] = &["finite", "infinite", "number", "notanumber", "normal", "subnormal"];

/// The rounding modifier among `mods`, if any; more than one is an error.
pub fn rounding(spec: &OpSpec<'_>) -> Result<Option<Rnd>, String> {
    let mut found = None;
    for m in &spec.mods {
        if let Some(r) = Rnd::from_mod(m) {
            if found.replace(r).is_some() {
                return Err("more than one rounding modifier".into());
            }
        }
    }
    Ok(found)
}

/// Refuses modifiers outside `allowed` (type modifiers aside).
pub fn only(spec: &OpSpec<'_>, allowed: &[&str]) -> Result<(), String> {
    match spec.mods.iter().find(|m| crate::ptx::type_size(m).is_none() && !allowed.contains(m)) {
        Some(m) => Err(format!("modifier .{m} is not supported here")),
        None => Ok(()),
    }
}

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    const OPS: &[&str] =
        &["add", "sub", "mul", "fma", "mad", "div", "abs", "neg", "min", "max", "copysign", "testp"];
    if !OPS.contains(&spec.base) {
        return Ok(None);
    }
    let wide = match spec.types().last() {
        Some(&"f32") => false,
        Some(&"f64") => true,
        _ => return Ok(None),
    };
    let ty = if wide { "f64" } else { "f32" };
    let r = rounding(spec)?;
    let rcode = r.unwrap_or(Rnd::Nearest).code();
    let ftz = if spec.has("ftz") { FTZ } else { 0 };
    let sat = if spec.has("sat") { SAT } else { 0 };
    if wide && (ftz != 0 || sat != 0) {
        return Err(".ftz and .sat apply to f32 only".into());
    }
    if r == Some(Rnd::NearestAway) {
        return Err(".rna is not a rounding of arithmetic".into());
    }
    let f32_flags = rcode | ftz | sat;
    let (exec, srcs): (ExecFn, usize) = match spec.base {
        "add" | "sub" | "mul" => {
            only(spec, &["rn", "rz", "rm", "rp", "ftz", "sat"])?;
            let f = match (spec.base, wide) {
                ("add", false) => mono!(add_f32, f32_flags; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
                ("sub", false) => mono!(sub_f32, f32_flags; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
                ("mul", false) => mono!(mul_f32, f32_flags; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15),
                ("add", true) => mono!(add_f64, rcode; 0 1 2 3),
                ("sub", true) => mono!(sub_f64, rcode; 0 1 2 3),
                _ => mono!(mul_f64, rcode; 0 1 2 3),
            };
            (f, 2)
        }
        "fma" | "mad" => {
            only(spec, &["rn", "rz", "rm", "rp", "ftz", "sat"])?;
            if r.is_none() && spec.base == "fma" {
                return Err("fma needs a rounding modifier".into());
            }
            let f = if wide {
                mono!(fma_f64, rcode; 0 1 2 3)
            } else {
                mono!(fma_f32, f32_flags; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
            };
            (f, 3)
        }
        "div" => {
            only(spec, &["rn", "rz", "rm", "rp", "ftz", "approx", "full"])?;
            let f = match (spec.has("approx"), spec.has("full"), r, wide) {
                (false, false, Some(_), true) => mono!(div_f64, rcode; 0 1 2 3),
                (false, false, Some(_), false) => mono!(div_f32, rcode | ftz; 0 1 2 3 4 5 6 7),
                (true, false, None, false) => mono!(div_approx_f32, ftz; 0 4),
                (false, true, None, false) => mono!(div_full_f32, ftz; 0 4),
                _ => {
                    return Err("div needs exactly one of .approx, .full (f32) or a rounding modifier".into());
                }
            };
            (f, 2)
        }
        "abs" | "neg" => {
            only(spec, &["ftz"])?;
            let f = match (spec.base, wide) {
                ("abs", false) => mono!(abs_f32, ftz; 0 4),
                ("neg", false) => mono!(neg_f32, ftz; 0 4),
                ("abs", true) => abs_f64 as ExecFn,
                _ => neg_f64 as ExecFn,
            };
            (f, 1)
        }
        "min" | "max" => {
            only(spec, &["ftz", "NaN", "xorsign", "abs"])?;
            let three = spec.operands.len() == 4;
            let xorsign = spec.has("xorsign");
            if xorsign != (spec.has("abs") && !three) {
                return Err(".xorsign needs .abs, with two inputs; three inputs take .abs alone".into());
            }
            let mut flags = if spec.base == "max" { MM_MAX } else { 0 };
            flags |= if ftz != 0 { MM_FTZ } else { 0 };
            flags |= if spec.has("NaN") { MM_NAN } else { 0 };
            flags |= if xorsign { MM_XORSIGN } else { 0 };
            flags |= if three && spec.has("abs") { MM_ABS } else { 0 };
            let f = if wide {
                if flags & !MM_MAX != 0 {
                    return Err("min/max.f64 takes no modifiers".into());
                }
                mono!(minmax_f64, flags; 0 1)
            } else {
                mono!(minmax_f32, flags; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
                    16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
            };
            (f, if three { 3 } else { 2 })
        }
        "copysign" => {
            only(spec, &[])?;
            (if wide { copysign_f64 as ExecFn } else { copysign_f32 as ExecFn }, 2)
        }
        _ => {
            // testp
            let op = TESTP_OPS.iter().position(|o| spec.has(o)).ok_or("testp needs a property")?;
            only(spec, TESTP_OPS)?;
            let f = match (op, wide) {
                (0, false) => testp::<0, false> as ExecFn,
                (1, false) => testp::<1, false>,
                (2, false) => testp::<2, false>,
                (3, false) => testp::<3, false>,
                (4, false) => testp::<4, false>,
                (5, false) => testp::<5, false>,
                (0, true) => testp::<0, true>,
                (1, true) => testp::<1, true>,
                (2, true) => testp::<2, true>,
                (3, true) => testp::<3, true>,
                (4, true) => testp::<4, true>,
                _ => testp::<5, true>,
            };
            (f, 1)
        }
    };
    if spec.operands.len() != srcs + 1 {
        return Err(format!("expected {} operands, found {}", srcs + 1, spec.operands.len()));
    }
    let mut ops = vec![cx.opnd(spec.operand(0)?)?];
    for k in 1..=srcs {
        ops.push(cx.opnd_typed(spec.operand(k)?, ty)?);
    }
    Ok(Some(Inst::new(Kind::Plain(exec), ops)))
}
