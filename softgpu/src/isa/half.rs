//! Half-precision arithmetic (PTX ISA 9.7.4, Half Precision Floating-Point Instructions):
//! `add`, `sub`, `mul`, `fma`, `neg`, `abs`, `min`, `max` on `.f16`, `.f16x2`, `.bf16` and
//! `.bf16x2`.
//!
//! A `.f16x2`/`.bf16x2` operand is a `.b32` holding two elements, element 0 in bits 0-15 and
//! element 1 in bits 16-31 (`fA[0] = a[0:15]; fA[1] = a[16:31]`); each element is computed
//! on its own. The only rounding is `.rn`. Each result is computed exactly in f64 (the
//! product of two half values is exact there, and a sum is carried with its exact error) and
//! rounded once to the element format.
//!
//! Modifiers: `.ftz` (f16 only) flushes sub-normal inputs and results to zeros of the same
//! sign; `.sat` (f16 only) clamps to [0, 1] with NaN to +0; `.relu` (`fma`) clamps negative
//! results to +0 and makes a NaN the canonical NaN; min/max take `.NaN` and `.xorsign.abs`
//! as their f32 forms do (9.7.4.7/8: "If values of both inputs are 0.0, then +0.0 > -0.0").

use super::float::arith::{min_max, min_max_xorsign};
use super::float::round::{BF16, F16, Fmt, Rnd, round_f64, two_sum};
use super::float::{mono, only, rounding};
use crate::exec::Cx;
use crate::fault::Fault;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind};

/// Flag bits of the exec fns.
const BF: u8 = 1;
const X2: u8 = 2;
const FTZ: u8 = 4;
const SAT: u8 = 8;
const RELU: u8 = 16;
/// min/max: `.NaN`, `.xorsign.abs`, and max rather than min (shares bits with SAT/RELU,
/// which min/max do not take).
const NAN: u8 = 8;
const XORSIGN: u8 = 16;
const MAX: u8 = 32;

#[inline(always)]
const fn fmt(flags: u8) -> Fmt {
    if flags & BF != 0 { BF16 } else { F16 }
}

/// An element's value (exact).
#[inline(always)]
pub fn to_f64(bits: u64, f: Fmt) -> f64 {
    if f.exp == BF16.exp {
        f32::from_bits((bits as u32) << 16) as f64
    } else {
        f16_to_f32(bits as u16) as f64
    }
}

/// An f16 value as f32 (exact): the fields re-biased; sub-normals as `m·2^-24`.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let e = (h >> 10 & 0x1f) as u32;
    let m = (h & 0x3ff) as u32;
    match e {
        0 => f32::from_bits(sign | (m as f32 * f32::from_bits(0x3380_0000)).to_bits()),
        31 => f32::from_bits(sign | 0x7f80_0000 | m << 13),
        _ => f32::from_bits(sign | (e + 112) << 23 | m << 13),
    }
}

/// An element operand under `.ftz`.
#[inline(always)]
fn hin<const F: u8>(b: u64) -> u64 {
    if F & FTZ != 0 { fmt(F).flush(b) } else { b }
}

/// An element result under `.ftz`, `.sat` and `.relu`.
#[inline(always)]
fn hout<const F: u8>(b: u64) -> u64 {
    let f = fmt(F);
    let b = if F & FTZ != 0 { f.flush(b) } else { b };
    if F & SAT != 0 {
        let one = if F & BF != 0 { 0x3f80 } else { 0x3c00 };
        if f.is_nan(b) || f.is_neg(b) {
            return 0;
        }
        return if to_f64(b, f) > 1.0 { one } else { b };
    }
    if F & RELU != 0 {
        if f.is_nan(b) {
            return f.nan();
        }
        if f.is_neg(b) {
            return 0;
        }
    }
    b
}

/// Applies `op` to each element (one, or two for the x2 types).
#[inline(always)]
fn elems<const F: u8>(a: u64, b: u64, c: u64, op: impl Fn(u64, u64, u64) -> u64) -> u64 {
    let lo = op(a & 0xffff, b & 0xffff, c & 0xffff);
    if F & X2 == 0 {
        return lo;
    }
    lo | op(a >> 16 & 0xffff, b >> 16 & 0xffff, c >> 16 & 0xffff) << 16
}

#[inline(always)]
fn sum<const F: u8>(x: u64, y: u64, negate_y: bool) -> u64 {
    let f = fmt(F);
    let (x, y) = (to_f64(hin::<F>(x), f), to_f64(hin::<F>(y), f));
    let (s, t) = two_sum(x, if negate_y { -y } else { y });
    hout::<F>(round_f64(s, t, f, Rnd::Nearest))
}

fn add_h<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| elems::<F>(a, b, 0, |x, y, _| sum::<F>(x, y, false)));
    Ok(())
}

fn sub_h<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| elems::<F>(a, b, 0, |x, y, _| sum::<F>(x, y, true)));
    Ok(())
}

fn mul_h<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let f = fmt(F);
    cx.map2(i, |a, b| {
        elems::<F>(a, b, 0, |x, y, _| {
            let p = to_f64(hin::<F>(x), f) * to_f64(hin::<F>(y), f);
            hout::<F>(round_f64(p, 0.0, f, Rnd::Nearest))
        })
    });
    Ok(())
}

fn fma_h<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let f = fmt(F);
    cx.map3(i, |a, b, c| {
        elems::<F>(a, b, c, |x, y, z| {
            let p = to_f64(hin::<F>(x), f) * to_f64(hin::<F>(y), f);
            let (s, t) = two_sum(p, to_f64(hin::<F>(z), f));
            hout::<F>(round_f64(s, t, f, Rnd::Nearest))
        })
    });
    Ok(())
}

fn neg_h<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let sign = fmt(F).sign();
    cx.map1(i, |a| elems::<F>(a, 0, 0, |x, _, _| hin::<F>(x) ^ sign));
    Ok(())
}

fn abs_h<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let sign = fmt(F).sign();
    cx.map1(i, |a| elems::<F>(a, 0, 0, |x, _, _| hin::<F>(x) & !sign));
    Ok(())
}

fn minmax_h<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let f = fmt(F);
    cx.map2(i, |a, b| {
        elems::<F>(a, b, 0, |x, y, _| {
            let (x, y) = (hin::<F>(x), hin::<F>(y));
            if F & XORSIGN != 0 {
                min_max_xorsign(x, y, f, F & MAX != 0, F & NAN != 0)
            } else {
                min_max(x, y, f, F & MAX != 0, F & NAN != 0)
            }
        })
    });
    Ok(())
}

/// The element format and x2 flag of a half type, if `ty` is one.
pub fn half_type(ty: &str) -> Option<u8> {
    Some(match ty {
        "f16" => 0,
        "f16x2" => X2,
        "bf16" => BF,
        "bf16x2" => BF | X2,
        _ => return None,
    })
}

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    const OPS: &[&str] = &["add", "sub", "mul", "fma", "neg", "abs", "min", "max"];
    if !OPS.contains(&spec.base) {
        return Ok(None);
    }
    let Some(mut flags) = spec.types().last().and_then(|t| half_type(t)) else { return Ok(None) };
    let bf = flags & BF != 0;
    if spec.has("ftz") {
        if bf {
            return Err(".ftz is not allowed on bf16".into());
        }
        flags |= FTZ;
    }
    let r = rounding(spec)?;
    if r.is_some_and(|r| r != Rnd::Nearest) {
        return Err("half-precision arithmetic rounds with .rn only".into());
    }
    let (exec, srcs): (ExecFn, usize) = match spec.base {
        "add" | "sub" | "mul" | "fma" => {
            only(spec, &["rn", "ftz", "sat", "relu"])?;
            if spec.has("sat") {
                if bf {
                    return Err(".sat is not allowed on bf16".into());
                }
                flags |= SAT;
            }
            if spec.has("relu") {
                if spec.base != "fma" || flags & SAT != 0 {
                    return Err(".relu applies to fma only, without .sat".into());
                }
                flags |= RELU;
            }
            if spec.base == "fma" && r.is_none() {
                return Err("fma needs a rounding modifier".into());
            }
            macro_rules! pick {
                ($f:ident) => { mono!($f, flags; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
                    16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31) };
            }
            match spec.base {
                "add" => (pick!(add_h), 2),
                "sub" => (pick!(sub_h), 2),
                "mul" => (pick!(mul_h), 2),
                _ => (pick!(fma_h), 3),
            }
        }
        "neg" | "abs" => {
            only(spec, &["ftz"])?;
            if spec.base == "neg" {
                (mono!(neg_h, flags; 0 1 2 3 4 5 6 7), 1)
            } else {
                (mono!(abs_h, flags; 0 1 2 3 4 5 6 7), 1)
            }
        }
        _ => {
            only(spec, &["ftz", "NaN", "xorsign", "abs"])?;
            if spec.has("xorsign") != spec.has("abs") {
                return Err(".xorsign and .abs go together".into());
            }
            flags |= if spec.has("NaN") { NAN } else { 0 };
            flags |= if spec.has("xorsign") { XORSIGN } else { 0 };
            flags |= if spec.base == "max" { MAX } else { 0 };
            (
                mono!(minmax_h, flags; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27
                28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
                60 61 62 63),
                2,
            )
        }
    };
    if spec.operands.len() != srcs + 1 {
        return Err(format!("expected {} operands, found {}", srcs + 1, spec.operands.len()));
    }
    let ops = spec.operands.iter().map(|o| cx.opnd(o)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Inst::new(Kind::Plain(exec), ops)))
}
