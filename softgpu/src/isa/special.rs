//! The special-function instructions (PTX ISA 9.7.3.13-22 and 9.7.4.9-10): `rcp`, `sqrt`,
//! `rsqrt`, `sin`, `cos`, `lg2`, `ex2`, `tanh`, counted in [`Class::Special`].
//!
//! The `.approx` forms are specified by a maximum error (ex2.f32: 2 ulp; rcp.approx.f32:
//! 1 ulp; sqrt.approx.f32: relative 2^-23; rsqrt.f32: relative 2^-22.9; lg2: 2^-22; sin/cos:
//! absolute 2^-20.5 on [-2π, 2π]; tanh.f32: relative 2^-11) and a table of special cases.
//! We compute them in f64 and round once to the result format, which is within every bound
//! and meets every table (`ex2(-inf) = +0`, `rsqrt(-0) = -inf`, `rcp(±0) = ±inf`,
//! `sqrt(-x) = NaN`, `lg2(±0) = -inf`, ...). `ex2` uses our own f64 kernel so that results do
//! not depend on the host's libm. The rounded forms (`.rn .rz .rm .rp`) of `rcp` and `sqrt`
//! are IEEE operations, exactly rounded.
//!
//! `rcp.approx.ftz.f64` and `rsqrt.approx.ftz.f64` work on the upper 32 bits of the operand
//! (sign, exponent and 20 fraction bits) and return a result whose low 32 bits are zero;
//! NaN inputs give the canonical 0x7fffffff00000000 and sub-normals are flushed (9.7.3.14/17).

use super::float::arith::{div32, div64, sqrt32, sqrt64};
use super::float::round::{F32, Fmt, Rnd, round_f64};
use super::float::{FTZ, fin, fout, mono, only, rounding};
use super::half::{half_type, to_f64};
use crate::exec::Cx;
use crate::fault::Fault;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{Class, ExecFn, Inst, Kind};

/// 2^x for |x| ≤ 1000, to about 1 ulp of f64: x = n + f with |f| ≤ 1/2, 2^f from its Taylor
/// series in f·ln 2 (13 terms: the remainder is below 2^-52), scaled by 2^n.
pub fn exp2_f64(x: f64) -> f64 {
    let n = x.round_ties_even();
    let y = (x - n) * std::f64::consts::LN_2;
    let mut p = 1.0;
    for k in (1..=13).rev() {
        p = 1.0 + p * y / k as f64;
    }
    p * f64::from_bits(((n as i64 + 1023) as u64) << 52)
}

/// `2^x` rounded to format `f`.
fn exp2_to(x: f64, f: Fmt) -> u64 {
    if x.is_nan() {
        f.nan()
    } else if x > 1000.0 {
        f.inf(false)
    } else if x < -1000.0 {
        0
    } else {
        round_f64(exp2_f64(x), 0.0, f, Rnd::Nearest)
    }
}

/// Defines an f32 exec fn from an `f32 -> f32` function of the flags.
macro_rules! unary_f32 {
    ($name:ident, |$a:ident, $flags:ident| $body:expr) => {
        fn $name<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
            cx.map1(i, |v| {
                let $a = fin::<F>(v);
                let $flags = F;
                let _ = $flags;
                fout::<F>($body)
            });
            Ok(())
        }
    };
}

unary_f32!(ex2_f32, |a, _f| f32::from_bits(exp2_to(a as f64, F32) as u32));
unary_f32!(lg2_f32, |a, _f| (a as f64).log2() as f32);
unary_f32!(sin_f32, |a, _f| (a as f64).sin() as f32);
unary_f32!(cos_f32, |a, _f| (a as f64).cos() as f32);
unary_f32!(tanh_f32, |a, _f| (a as f64).tanh() as f32);
unary_f32!(rsqrt_f32, |a, _f| (1.0 / (a as f64).sqrt()) as f32);
unary_f32!(rcp_approx_f32, |a, _f| 1.0 / a);
unary_f32!(sqrt_approx_f32, |a, _f| a.sqrt());
unary_f32!(rcp_f32, |a, f| div32(1.0, a, Rnd::from_code(f & 3)));
unary_f32!(sqrt_f32, |a, f| sqrt32(a, Rnd::from_code(f & 3)));

fn rcp_f64<const R: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| div64(1.0, f64::from_bits(a), Rnd::from_code(R)).to_bits());
    Ok(())
}

fn sqrt_f64<const R: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| sqrt64(f64::from_bits(a), Rnd::from_code(R)).to_bits());
    Ok(())
}

fn rsqrt_f64(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (1.0 / f64::from_bits(a).sqrt()).to_bits());
    Ok(())
}

const HIGH: u64 = 0xffff_ffff_0000_0000;

/// The `.approx.ftz.f64` forms: `op` on the upper word of `a` (flushed), the result flushed
/// and cut to its upper word.
#[inline(always)]
fn upper_word(a: u64, op: impl Fn(f64) -> f64) -> u64 {
    let x = f64::from_bits(a & HIGH);
    if x.is_nan() {
        return 0x7fff_ffff_0000_0000;
    }
    let x = if x.is_subnormal() { 0.0f64.copysign(x) } else { x };
    let r = op(x);
    let r = if r.is_subnormal() { 0.0f64.copysign(r) } else { r };
    if r.is_nan() { 0x7fff_ffff_0000_0000 } else { r.to_bits() & HIGH }
}

fn rcp_approx_ftz_f64(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| upper_word(a, |x| 1.0 / x));
    Ok(())
}

fn rsqrt_approx_ftz_f64(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| upper_word(a, |x| 1.0 / x.sqrt()));
    Ok(())
}

/// Flag bits of the half forms: the `half_type` bits (1 = bf16, 2 = x2), `.ftz`, and tanh.
const H_FTZ: u8 = 4;
const H_TANH: u8 = 8;

/// `ex2.approx` / `tanh.approx` on f16, bf16 and their x2 forms (9.7.4.9/10).
fn half_fn<const F: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let f = if F & 1 != 0 { super::float::round::BF16 } else { super::float::round::F16 };
    let one = |x: u64| -> u64 {
        let x = if F & H_FTZ != 0 { f.flush(x) } else { x };
        let v = to_f64(x, f);
        let r = if F & H_TANH != 0 { round_f64(v.tanh(), 0.0, f, Rnd::Nearest) } else { exp2_to(v, f) };
        if F & H_FTZ != 0 { f.flush(r) } else { r }
    };
    cx.map1(i, |a| {
        let lo = one(a & 0xffff);
        if F & 2 != 0 { lo | one(a >> 16 & 0xffff) << 16 } else { lo }
    });
    Ok(())
}

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    const OPS: &[&str] = &["ex2", "lg2", "rcp", "sqrt", "rsqrt", "sin", "cos", "tanh"];
    if !OPS.contains(&spec.base) {
        return Ok(None);
    }
    let Some(&ty) = spec.types().last() else { return Ok(None) };
    let approx = spec.has("approx");
    let ftz = spec.has("ftz");
    let r = rounding(spec)?;
    if r == Some(Rnd::NearestAway) {
        return Err(".rna is not allowed here".into());
    }
    only(spec, &["approx", "ftz", "rn", "rz", "rm", "rp"])?;
    let exec: ExecFn = match (spec.base, ty) {
        (_, "f32") => {
            let f = if ftz { FTZ } else { 0 } | r.map_or(0, Rnd::code);
            let needs_approx = !matches!(spec.base, "rcp" | "sqrt");
            if needs_approx && (!approx || r.is_some()) {
                return Err(format!("{}.f32 needs .approx", spec.base));
            }
            if !needs_approx && approx == r.is_some() {
                return Err(format!("{} needs exactly one of .approx or a rounding modifier", spec.base));
            }
            if spec.base == "tanh" && ftz {
                return Err("tanh.approx.f32 takes no .ftz".into());
            }
            match spec.base {
                "ex2" => mono!(ex2_f32, f; 0 4),
                "lg2" => mono!(lg2_f32, f; 0 4),
                "sin" => mono!(sin_f32, f; 0 4),
                "cos" => mono!(cos_f32, f; 0 4),
                "tanh" => mono!(tanh_f32, f; 0),
                "rsqrt" => mono!(rsqrt_f32, f; 0 4),
                "rcp" if approx => mono!(rcp_approx_f32, f; 0 4),
                "sqrt" if approx => mono!(sqrt_approx_f32, f; 0 4),
                "rcp" => mono!(rcp_f32, f; 0 1 2 3 4 5 6 7),
                _ => mono!(sqrt_f32, f; 0 1 2 3 4 5 6 7),
            }
        }
        ("rcp" | "sqrt", "f64") if r.is_some() && !approx && !ftz => {
            let code = r.map_or(0, Rnd::code);
            if spec.base == "rcp" { mono!(rcp_f64, code; 0 1 2 3) } else { mono!(sqrt_f64, code; 0 1 2 3) }
        }
        ("rcp", "f64") if approx && ftz => rcp_approx_ftz_f64,
        ("rsqrt", "f64") if approx && ftz => rsqrt_approx_ftz_f64,
        ("rsqrt", "f64") if approx => rsqrt_f64,
        ("ex2" | "tanh", _) if half_type(ty).is_some() && approx && r.is_none() => {
            let mut f = half_type(ty).unwrap_or(0);
            let bf = f & 1 != 0;
            if spec.base == "ex2" && ftz != bf {
                return Err("ex2.approx takes .ftz with bf16 types and only with them".into());
            }
            if spec.base == "tanh" && ftz {
                return Err("tanh.approx takes no .ftz".into());
            }
            f |= if ftz { H_FTZ } else { 0 } | if spec.base == "tanh" { H_TANH } else { 0 };
            mono!(half_fn, f; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
        }
        _ => return Err(format!("{} with these modifiers and type .{ty} is not supported", spec.base)),
    };
    if spec.operands.len() != 2 {
        return Err(format!("expected 2 operands, found {}", spec.operands.len()));
    }
    let d = cx.opnd(spec.operand(0)?)?;
    let a = cx.opnd_typed(spec.operand(1)?, ty)?;
    Ok(Some(Inst::new(Kind::Plain(exec), vec![d, a]).with_class(Class::Special)))
}
