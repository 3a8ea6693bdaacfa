//! `cvt` (PTX ISA 9.7.9.21, Data Movement and Conversion Instructions: cvt) between the
//! integer types `.u8-.u64 .s8-.s64` and the floating types `.f16 .bf16 .f32 .f64`, plus
//! `.f16x2`/`.bf16x2` from two f32 and `.tf32` from f32.
//!
//! The rules we implement, from the ISA's Integer Notes and Floating Point Notes:
//! - integer to integer: the source's low bits, sign- or zero-extended by its type, then
//!   truncated to the destination (or clamped to its range under `.sat`);
//! - float to integer: integer rounding `.rni .rzi .rmi .rpi` is required; the result is
//!   clamped to the destination range; NaN gives 0, except that an f64 source or a 64-bit
//!   destination gives `1 << (bits - 1)`;
//! - to float: floating rounding `.rn .rz .rm .rp` (`.rna` for tf32) rounds once from the
//!   exact source value; `.rni .rzi .rmi .rpi` between floats of one size round to an integral
//!   value; widening is exact;
//! - `.ftz` flushes f32 sub-normal inputs and results to zeros of the same sign; `.sat`
//!   clamps a float result to [0, 1] with NaN to +0; `.relu` makes negative results +0 and a
//!   NaN the canonical NaN; `.satfinite` turns an out-of-range result into the largest
//!   finite value of its sign (a NaN stays NaN);
//! - `cvt.frnd.f16x2.f32 d, a, b` / `.bf16x2`: "the value converted from input a is stored in
//!   the upper half of d and the value converted from input b is stored in the lower half".
//!
//! A signed result narrower than 32 bits is written sign-extended to 32 bits ("sign-extended
//! to the destination register width"; our registers do not record their width, and 16- and
//! 32-bit registers both read it right); other results are zero-extended.

use super::float::arith::sat32;
use super::float::round::{self, BF16, F16, F32, F64, Fmt, Rnd, TF32, round_f64};
use super::float::{only, rounding};
use super::half::{f16_to_f32, to_f64};
use crate::exec::Cx;
use crate::fault::Fault;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind};

/// A conversion's source or destination type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Int {
        bits: u32,
        signed: bool,
    },
    /// Index into [`FMTS`].
    Float(u8),
}

const FMTS: [Fmt; 5] = [F16, BF16, F32, F64, TF32];
const IDX_F32: u8 = 2;
const IDX_F64: u8 = 3;
const IDX_TF32: u8 = 4;

fn parse_ty(t: &str) -> Option<Ty> {
    Some(match t {
        "u8" | "u16" | "u32" | "u64" => Ty::Int { bits: t[1..].parse().ok()?, signed: false },
        "s8" | "s16" | "s32" | "s64" => Ty::Int { bits: t[1..].parse().ok()?, signed: true },
        "f16" => Ty::Float(0),
        "bf16" => Ty::Float(1),
        "f32" => Ty::Float(2),
        "f64" => Ty::Float(3),
        "tf32" => Ty::Float(4),
        _ => return None,
    })
}

/// Everything a conversion needs, packed into `aux` at decode time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    src: Ty,
    dst: Ty,
    rnd: Rnd,
    /// Integer rounding (`.rni` ...): to an integral value.
    integral: bool,
    ftz: bool,
    sat: bool,
    relu: bool,
    satfinite: bool,
}

fn pack_ty(t: Ty) -> u64 {
    match t {
        Ty::Int { bits, signed } => 0x80 | (signed as u64) << 6 | bits.trailing_zeros() as u64,
        Ty::Float(i) => i as u64,
    }
}

fn unpack_ty(v: u64) -> Ty {
    if v & 0x80 != 0 { Ty::Int { bits: 1 << (v & 7), signed: v & 0x40 != 0 } } else { Ty::Float(v as u8 & 7) }
}

impl Plan {
    fn pack(&self) -> u64 {
        pack_ty(self.src)
            | pack_ty(self.dst) << 8
            | (self.rnd.code() as u64) << 16
            | (self.integral as u64) << 19
            | (self.ftz as u64) << 20
            | (self.sat as u64) << 21
            | (self.relu as u64) << 22
            | (self.satfinite as u64) << 23
    }

    fn unpack(aux: u64) -> Plan {
        Plan {
            src: unpack_ty(aux & 0xff),
            dst: unpack_ty(aux >> 8 & 0xff),
            rnd: Rnd::from_code((aux >> 16 & 7) as u8),
            integral: aux >> 19 & 1 != 0,
            ftz: aux >> 20 & 1 != 0,
            sat: aux >> 21 & 1 != 0,
            relu: aux >> 22 & 1 != 0,
            satfinite: aux >> 23 & 1 != 0,
        }
    }
}

/// The integer value of a source operand of `bits` bits.
#[inline(always)]
fn read_int(v: u64, bits: u32, signed: bool) -> i128 {
    let sh = 64 - bits;
    if signed { ((v << sh) as i64 >> sh) as i128 } else { ((v << sh) >> sh) as i128 }
}

/// An integer result: clamped under `sat`, else truncated; narrow signed results
/// sign-extended to 32 bits.
#[inline(always)]
fn write_int(x: i128, bits: u32, signed: bool, sat: bool) -> u64 {
    let x = if sat {
        let (lo, hi) = if signed {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        x.clamp(lo, hi)
    } else {
        x
    };
    let sh = 64 - bits;
    let t = ((x as u64) << sh) >> sh;
    if signed && bits < 32 { (((t << sh) as i64 >> sh) as u64) & 0xffff_ffff } else { t }
}

/// `x` rounded to an integral value.
#[inline(always)]
fn integral(x: f64, r: Rnd) -> f64 {
    match r {
        Rnd::Nearest => x.round_ties_even(),
        Rnd::Zero => x.trunc(),
        Rnd::Down => x.floor(),
        Rnd::Up => x.ceil(),
        Rnd::NearestAway => x.round(),
    }
}

/// The exact value of a float source (flushed under `.ftz` when it is f32).
#[inline(always)]
fn float_in(v: u64, idx: u8, ftz: bool) -> f64 {
    match idx {
        IDX_F32 => {
            let b = v as u32 as u64;
            f32::from_bits(if ftz { F32.flush(b) } else { b } as u32) as f64
        }
        IDX_F64 => f64::from_bits(v),
        i => to_f64(v & 0xffff, FMTS[i as usize]),
    }
}

/// Float to integer (Integer Notes): round, clamp, NaN rule.
fn to_int(x: f64, from_f64: bool, bits: u32, signed: bool, r: Rnd) -> u64 {
    if x.is_nan() {
        let v = if !from_f64 && bits != 64 { 0 } else { 1i128 << (bits - 1) };
        let v = if signed { -v } else { v };
        return write_int(v, bits, signed, false);
    }
    let x = integral(x, r);
    let (lo, hi) = if signed {
        (-(2f64.powi(bits as i32 - 1)), 2f64.powi(bits as i32 - 1))
    } else {
        (0.0, 2f64.powi(bits as i32))
    };
    let v = if x < lo {
        lo as i128
    } else if x >= hi {
        hi as i128 - 1
    } else {
        x as i128
    };
    write_int(v, bits, signed, false)
}

/// The `.ftz`, `.sat`, `.relu` and `.satfinite` treatment of a float result in format `idx`,
/// and the tf32 placement in the upper 19 bits of an f32.
fn float_out(bits: u64, idx: u8, p: &Plan) -> u64 {
    let f = FMTS[idx as usize];
    let mut b = bits;
    if p.ftz && idx == IDX_F32 {
        b = F32.flush(b);
    }
    if p.satfinite && f.is_inf(b) {
        b = f.max_finite(f.is_neg(b));
    }
    if p.relu {
        if f.is_nan(b) {
            b = f.nan();
        } else if f.is_neg(b) {
            b = 0;
        }
    }
    if p.sat {
        b = if f.is_nan(b) || f.is_neg(b) {
            0
        } else if to_f64_any(b, idx) > 1.0 {
            round_f64(1.0, 0.0, f, Rnd::Nearest)
        } else {
            b
        };
    }
    if idx == IDX_TF32 { b << 13 } else { b }
}

fn to_f64_any(b: u64, idx: u8) -> f64 {
    match idx {
        IDX_F32 => f32::from_bits(b as u32) as f64,
        IDX_F64 => f64::from_bits(b),
        IDX_TF32 => f32::from_bits((b << 13) as u32) as f64,
        i => to_f64(b, FMTS[i as usize]),
    }
}

/// One conversion by plan `p`.
fn convert(v: u64, p: &Plan) -> u64 {
    match (p.src, p.dst) {
        (Ty::Int { bits: sb, signed: ss }, Ty::Int { bits, signed }) => {
            write_int(read_int(v, sb, ss), bits, signed, p.sat)
        }
        (Ty::Int { bits: sb, signed: ss }, Ty::Float(d)) => {
            let x = round::from_int(read_int(v, sb, ss));
            float_out(round::round(x, FMTS[d as usize], p.rnd), d, p)
        }
        (Ty::Float(s), Ty::Int { bits, signed }) => {
            to_int(float_in(v, s, p.ftz), s == IDX_F64, bits, signed, p.rnd)
        }
        (Ty::Float(s), Ty::Float(d)) => {
            let x = float_in(v, s, p.ftz);
            let f = FMTS[d as usize];
            let b = if x.is_nan() {
                f.nan()
            } else if p.integral {
                round_f64(integral(x, p.rnd), 0.0, f, Rnd::Nearest)
            } else {
                round_f64(x, 0.0, f, p.rnd)
            };
            float_out(b, d, p)
        }
    }
}

fn cvt_any(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let p = Plan::unpack(i.aux);
    cx.map1(i, |v| convert(v, &p));
    Ok(())
}

/// `cvt.frnd.{f16,bf16}x2.f32 d, a, b`: a to the upper half, b to the lower.
fn cvt_x2(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let p = Plan::unpack(i.aux);
    cx.map2(i, |a, b| convert(a, &p) << 16 | convert(b, &p));
    Ok(())
}

/// f32 to bf16, to nearest even (the hot path of `cvt.rn.bf16.f32`).
#[inline(always)]
pub fn f32_to_bf16_rn(b: u32) -> u64 {
    if b & 0x7fff_ffff > 0x7f80_0000 {
        return BF16.nan();
    }
    ((b as u64 + 0x7fff + (b as u64 >> 16 & 1)) >> 16) & 0xffff
}

/// f32 to f16, to nearest even (the hot path of `cvt.rn.f16.f32`).
#[inline(always)]
pub fn f32_to_f16_rn(b: u32) -> u64 {
    let x = f32::from_bits(b);
    if x.is_nan() { F16.nan() } else { half::f16::from_f32(x).to_bits() as u64 }
}

fn rn_bf16_f32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| f32_to_bf16_rn(a as u32));
    Ok(())
}

fn rn_f16_f32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| f32_to_f16_rn(a as u32));
    Ok(())
}

fn rn_bf16x2_f32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| f32_to_bf16_rn(a as u32) << 16 | f32_to_bf16_rn(b as u32));
    Ok(())
}

fn rn_f16x2_f32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| f32_to_f16_rn(a as u32) << 16 | f32_to_f16_rn(b as u32));
    Ok(())
}

fn f32_f16(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| f16_to_f32(a as u16).to_bits() as u64);
    Ok(())
}

fn f32_bf16(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (a & 0xffff) << 16);
    Ok(())
}

fn sat_f32_f32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| sat32(f32::from_bits(a as u32)).to_bits() as u64);
    Ok(())
}

fn f64_f32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (f32::from_bits(a as u32) as f64).to_bits());
    Ok(())
}

fn rn_f32_f64(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (f64::from_bits(a) as f32).to_bits() as u64);
    Ok(())
}

/// Integer to integer without `.sat`: `aux` holds the source and destination as [`pack_ty`].
fn int_int(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let (Ty::Int { bits: sb, signed: ss }, Ty::Int { bits: db, signed: ds }) =
        (unpack_ty(i.aux & 0xff), unpack_ty(i.aux >> 8 & 0xff))
    else {
        unreachable!("int_int is decoded for integer types")
    };
    cx.map1(i, |v| write_int(read_int(v, sb, ss), db, ds, false));
    Ok(())
}

fn rn_f32_s32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (a as u32 as i32 as f32).to_bits() as u64);
    Ok(())
}

fn rn_f32_u32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (a as u32 as f32).to_bits() as u64);
    Ok(())
}

fn rn_f64_s32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (a as u32 as i32 as f64).to_bits());
    Ok(())
}

fn rn_f32_s64(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (a as i64 as f32).to_bits() as u64);
    Ok(())
}

fn rn_f32_u64(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (a as f32).to_bits() as u64);
    Ok(())
}

/// The integer rounding modifier (`.rni .rzi .rmi .rpi`), if any.
fn int_rounding(spec: &OpSpec<'_>) -> Option<Rnd> {
    spec.mods.iter().find_map(|m| match *m {
        "rni" => Some(Rnd::Nearest),
        "rzi" => Some(Rnd::Zero),
        "rmi" => Some(Rnd::Down),
        "rpi" => Some(Rnd::Up),
        _ => None,
    })
}

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    if spec.base != "cvt" {
        return Ok(None);
    }
    only(
        spec,
        &[
            "rn",
            "rz",
            "rm",
            "rp",
            "rna",
            "rni",
            "rzi",
            "rmi",
            "rpi",
            "ftz",
            "sat",
            "relu",
            "satfinite",
            "tf32",
        ],
    )?;
    let types = spec.types();
    let (dname, aname) = match (spec.has("tf32"), types.as_slice()) {
        (true, [a]) => ("tf32", *a),
        (false, [d, a]) => (*d, *a),
        _ => return Err("cvt needs a destination and a source type".into()),
    };
    let x2 = matches!(dname, "f16x2" | "bf16x2");
    let dst = if x2 {
        Ty::Float(if dname == "f16x2" { 0 } else { 1 })
    } else {
        parse_ty(dname).ok_or(format!("unsupported cvt destination .{dname}"))?
    };
    let src = parse_ty(aname)
        .filter(|t| *t != Ty::Float(IDX_TF32))
        .ok_or(format!("unsupported cvt source .{aname}"))?;
    let frnd = rounding(spec)?;
    let irnd = int_rounding(spec);
    if frnd.is_some() && irnd.is_some() {
        return Err("cvt takes one rounding modifier".into());
    }
    let float_dst_fmt = match dst {
        Ty::Float(i) => Some(i),
        Ty::Int { .. } => None,
    };
    let (rnd, integral) = match (src, dst) {
        (Ty::Float(_), Ty::Int { .. }) => {
            (irnd.ok_or("float-to-integer cvt needs .rni, .rzi, .rmi or .rpi")?, false)
        }
        (Ty::Float(s), Ty::Float(d)) if irnd.is_some() => {
            if FMTS[s as usize] != FMTS[d as usize] || x2 {
                return Err("integer rounding of a float needs equal source and destination types".into());
            }
            (irnd.unwrap_or(Rnd::Nearest), true)
        }
        _ if irnd.is_some() => return Err("integer rounding applies to float sources only".into()),
        _ => (frnd.unwrap_or(Rnd::Nearest), false),
    };
    if rnd == Rnd::NearestAway && float_dst_fmt != Some(IDX_TF32) {
        return Err(".rna is for tf32 only".into());
    }
    if (spec.has("relu") || spec.has("satfinite")) && !matches!(float_dst_fmt, Some(0 | 1 | IDX_TF32)) {
        return Err(".relu and .satfinite are for f16, bf16 and tf32 destinations".into());
    }
    if x2 && src != Ty::Float(IDX_F32) {
        return Err(".f16x2/.bf16x2 conversions take two f32 sources".into());
    }
    let plan = Plan {
        src,
        dst,
        rnd,
        integral,
        ftz: spec.has("ftz"),
        sat: spec.has("sat"),
        relu: spec.has("relu"),
        satfinite: spec.has("satfinite"),
    };
    let plain = !plan.ftz && !plan.sat && !plan.relu && !plan.satfinite && !integral;
    let rn = plain && rnd == Rnd::Nearest;
    let exec: ExecFn = match (dname, aname) {
        _ if x2 => match dname {
            "f16x2" if rn => rn_f16x2_f32,
            "bf16x2" if rn => rn_bf16x2_f32,
            _ => cvt_x2,
        },
        ("bf16", "f32") if rn => rn_bf16_f32,
        ("f16", "f32") if rn => rn_f16_f32,
        ("f32", "f16") if plain => f32_f16,
        ("f32", "bf16") if plain => f32_bf16,
        ("f64", "f32") if plain => f64_f32,
        ("f32", "f64") if rn => rn_f32_f64,
        ("f32", "f32") if plan.sat && !plan.ftz && !integral => sat_f32_f32,
        ("f32", "s32") if rn => rn_f32_s32,
        ("f32", "u32") if rn => rn_f32_u32,
        ("f64", "s32" | "u32") if plain => {
            if aname == "s32" {
                rn_f64_s32
            } else {
                rn_f64_u32
            }
        }
        ("f32", "s64") if rn => rn_f32_s64,
        ("f32", "u64") if rn => rn_f32_u64,
        _ if matches!((src, dst), (Ty::Int { .. }, Ty::Int { .. })) && !plan.sat => int_int,
        _ => cvt_any,
    };
    let n = if x2 { 3 } else { 2 };
    if spec.operands.len() != n {
        return Err(format!("expected {n} operands, found {}", spec.operands.len()));
    }
    let mut ops = vec![cx.opnd(spec.operand(0)?)?];
    for k in 1..n {
        ops.push(cx.opnd_typed(spec.operand(k)?, aname)?);
    }
    Ok(Some(Inst::new(Kind::Plain(exec), ops).with_aux(plan.pack())))
}

fn rn_f64_u32(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| (a as u32 as f64).to_bits());
    Ok(())
}
