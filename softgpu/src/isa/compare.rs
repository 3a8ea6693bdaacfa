//! Comparison and selection (PTX ISA §9.7.7 "Comparison and Selection Instructions", and the
//! half-precision `setp` of §9.7.5): `setp` (integer, `.f32{.ftz}`, `.f64`, `.f16{.ftz}`,
//! `.bf16`, and the packed `.f16x2`/`.bf16x2`), `set` (`.u32`/`.s32`/`.f32` results), `selp`
//! and `slct`.
//!
//! Comparisons (PTX ISA §9.3.1): integers compare by their type's signedness (`lo ls hi hs`
//! are the unsigned spellings of `lt le gt ge`; `.b` types compare as unsigned). For floats,
//! `eq ne lt le gt ge` are ordered (false when either input is NaN, `ne` included), `equ neu
//! ltu leu gtu geu` are unordered (true when either is NaN), `num` is true when neither is NaN
//! and `nan` when either is. `-0.0` equals `+0.0`. `.ftz` flushes subnormal inputs to zero of
//! the same sign before comparing.
//!
//! With a `.BoolOp` (`and`, `or`, `xor`) the result `t` is combined with the predicate `c`
//! (which may be negated, `!%p`): `p = t BoolOp c`, `q = !t BoolOp c`. Without one, `p = t`
//! and `q = !t`, which is the same with `c = 1` and `and`. For `.f16x2`/`.bf16x2`, `p` takes
//! the comparison of the low halves and `q` that of the high halves.

use crate::exec::Cx;
use crate::fault::Fault;
use crate::isa::bits::pred_source;
use crate::isa::int::mask;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind, Opnd};
use crate::ptx::Operand;

const EQ: u8 = 0;
const NE: u8 = 1;
const LT: u8 = 2;
const LE: u8 = 3;
const GT: u8 = 4;
const GE: u8 = 5;
const EQU: u8 = 6;
const NEU: u8 = 7;
const LTU: u8 = 8;
const LEU: u8 = 9;
const GTU: u8 = 10;
const GEU: u8 = 11;
const NUM: u8 = 12;
const NAN: u8 = 13;

/// A value as a comparison sees it.
trait CmpVal: PartialOrd + Copy {
    fn load(v: u64) -> Self;
    fn nan(self) -> bool;
}

macro_rules! int_cmp {
    ($($t:ty),*) => {$(
        impl CmpVal for $t {
            #[inline(always)]
            fn load(v: u64) -> Self { v as $t }
            #[inline(always)]
            fn nan(self) -> bool { false }
        }
    )*};
}
int_cmp!(u16, u32, u64, i16, i32, i64);

impl CmpVal for f32 {
    #[inline(always)]
    fn load(v: u64) -> Self {
        f32::from_bits(v as u32)
    }
    fn nan(self) -> bool {
        self.is_nan()
    }
}

impl CmpVal for f64 {
    #[inline(always)]
    fn load(v: u64) -> Self {
        f64::from_bits(v)
    }
    fn nan(self) -> bool {
        self.is_nan()
    }
}

/// A float decoded from its bits by `DECODE`: 0 f32 with subnormals flushed, 1 f16, 2 f16
/// with subnormals flushed, 3 bf16. Comparisons happen on the exact `f32` value.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
struct Float<const DECODE: u8>(f32);

impl<const DECODE: u8> CmpVal for Float<DECODE> {
    #[inline(always)]
    fn load(v: u64) -> Self {
        Float(match DECODE {
            0 => {
                let x = f32::from_bits(v as u32);
                if x.is_subnormal() { 0f32.copysign(x) } else { x }
            }
            1 => half::f16::from_bits(v as u16).to_f32(),
            2 => {
                let h = v as u16;
                let h = if h & 0x7c00 == 0 { h & 0x8000 } else { h };
                half::f16::from_bits(h).to_f32()
            }
            _ => half::bf16::from_bits(v as u16).to_f32(),
        })
    }
    fn nan(self) -> bool {
        self.0.is_nan()
    }
}

/// `a OP b`.
#[inline(always)]
fn eval<T: CmpVal, const OP: u8>(a: T, b: T) -> bool {
    let u = a.nan() || b.nan();
    match OP {
        EQ => a == b,
        NE => !u && a != b,
        LT => a < b,
        LE => a <= b,
        GT => a > b,
        GE => a >= b,
        EQU => u || a == b,
        NEU => a != b,
        LTU => u || a < b,
        LEU => u || a <= b,
        GTU => u || a > b,
        GEU => u || a >= b,
        NUM => !u,
        _ => u,
    }
}

/// `t BoolOp c` for aux's bool op (bits 0..2: 0 and, 1 or, 2 xor).
#[inline(always)]
fn combine(aux: u64, t: u64, c: u64) -> u64 {
    match aux & 3 {
        0 => t & c,
        1 => t | c,
        _ => t ^ c,
    }
}

/// The predicate operand `c` with its negation applied (aux bit 2).
#[inline(always)]
fn pred_c(cx: &Cx<'_>, i: &Inst, k: usize, l: usize) -> u64 {
    (cx.get(i.ops[k], l) ^ (i.aux >> 2 & 1)) & 1
}

/// ops: `p, q, a, b, c`.
fn setp<T: CmpVal, const OP: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    for l in cx.lanes() {
        let t = eval::<T, OP>(T::load(cx.get(i.ops[2], l)), T::load(cx.get(i.ops[3], l))) as u64;
        let c = pred_c(cx, i, 4, l);
        cx.set(i.ops[0], l, combine(i.aux, t, c));
        cx.set(i.ops[1], l, combine(i.aux, t ^ 1, c));
    }
    Ok(())
}

/// The packed form: `p` from the low halves, `q` from the high halves.
fn setp_x2<T: CmpVal, const OP: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    for l in cx.lanes() {
        let (a, b) = (cx.get(i.ops[2], l), cx.get(i.ops[3], l));
        let lo = eval::<T, OP>(T::load(a), T::load(b)) as u64;
        let hi = eval::<T, OP>(T::load(a >> 16), T::load(b >> 16)) as u64;
        let c = pred_c(cx, i, 4, l);
        cx.set(i.ops[0], l, combine(i.aux, lo, c));
        cx.set(i.ops[1], l, combine(i.aux, hi, c));
    }
    Ok(())
}

/// `set`: ops `d, a, b, c`; the result is all ones (integer) or `1.0f` (aux bit 3), else 0.
fn set<T: CmpVal, const OP: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let one = if i.aux & 8 != 0 { 1f32.to_bits() as u64 } else { 0xffff_ffff };
    for l in cx.lanes() {
        let t = eval::<T, OP>(T::load(cx.get(i.ops[1], l)), T::load(cx.get(i.ops[2], l))) as u64;
        let r = combine(i.aux, t, pred_c(cx, i, 3, l));
        cx.set(i.ops[0], l, if r != 0 { one } else { 0 });
    }
    Ok(())
}

/// `f::<T, OP>` for a comparison code known at decode time.
macro_rules! with_op {
    ($f:ident, $t:ty, $op:expr) => {
        match $op {
            EQ => $f::<$t, EQ> as ExecFn,
            NE => $f::<$t, NE>,
            LT => $f::<$t, LT>,
            LE => $f::<$t, LE>,
            GT => $f::<$t, GT>,
            GE => $f::<$t, GE>,
            EQU => $f::<$t, EQU>,
            NEU => $f::<$t, NEU>,
            LTU => $f::<$t, LTU>,
            LEU => $f::<$t, LEU>,
            GTU => $f::<$t, GTU>,
            GEU => $f::<$t, GEU>,
            NUM => $f::<$t, NUM>,
            _ => $f::<$t, NAN>,
        }
    };
}

/// `f` for the source type `ty` (with `.ftz`) and comparison `op`.
macro_rules! by_type {
    ($f:ident, $ty:expr, $ftz:expr, $op:expr) => {
        match ($ty, $ftz) {
            ("u16" | "b16", _) => with_op!($f, u16, $op),
            ("u32" | "b32", _) => with_op!($f, u32, $op),
            ("u64" | "b64", _) => with_op!($f, u64, $op),
            ("s16", _) => with_op!($f, i16, $op),
            ("s32", _) => with_op!($f, i32, $op),
            ("s64", _) => with_op!($f, i64, $op),
            ("f32", false) => with_op!($f, f32, $op),
            ("f32", true) => with_op!($f, Float<0>, $op),
            ("f64", false) => with_op!($f, f64, $op),
            ("f16", false) => with_op!($f, Float<1>, $op),
            ("f16", true) => with_op!($f, Float<2>, $op),
            ("bf16", false) => with_op!($f, Float<3>, $op),
            (other, _) => {
                return Err(format!(
                    "comparison of .{other}{} is not supported",
                    if $ftz { " with .ftz" } else { "" }
                ))
            }
        }
    };
}

/// The comparison code of `spec`, checked against the source type.
fn cmp_op(spec: &OpSpec<'_>, ty: &str) -> Result<u8, String> {
    let float = ty.starts_with('f') || ty.starts_with("bf");
    let names = ["eq", "ne", "lt", "le", "gt", "ge", "equ", "neu", "ltu", "leu", "gtu", "geu", "num", "nan"];
    let name = spec.mods.first().copied().unwrap_or("");
    let op = match name {
        "lo" | "ls" | "hi" | "hs" if !float => {
            [LT, LE, GT, GE][["lo", "ls", "hi", "hs"].iter().position(|&n| n == name).unwrap()]
        }
        _ => names.iter().position(|&n| n == name).ok_or_else(|| format!("unknown comparison `.{name}`"))?
            as u8,
    };
    if !float && op >= EQU {
        return Err(format!("comparison `.{name}` needs a floating-point type"));
    }
    if ty.starts_with('b') && !float && op > NE {
        return Err(format!("`.{ty}` compares only with eq or ne"));
    }
    Ok(op)
}

/// aux bits 0..2 for the bool op of `spec` (and as the default), and whether it has one.
fn bool_op(spec: &OpSpec<'_>) -> (u64, bool) {
    let m = spec.mods.get(1).copied();
    match m {
        Some("and") => (0, true),
        Some("or") => (1, true),
        Some("xor") => (2, true),
        _ => (0, false),
    }
}

/// The `c` operand at `k` (if the instruction has a bool op): its slot and negation bit.
fn c_operand(
    spec: &OpSpec<'_>,
    cx: &mut DecodeCx<'_>,
    k: usize,
    has_bool: bool,
) -> Result<(Opnd, u64), String> {
    let want = if has_bool { k + 1 } else { k };
    if spec.operands.len() != want {
        return Err(format!("expected {want} operands, found {}", spec.operands.len()));
    }
    if has_bool { pred_source(&spec.operands[k], cx) } else { Ok((Opnd::Imm(1), 0)) }
}

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    match spec.base {
        "setp" => decode_setp(spec, cx).map(Some),
        "set" => decode_set(spec, cx).map(Some),
        "selp" => decode_selp(spec, cx).map(Some),
        "slct" => decode_slct(spec, cx).map(Some),
        _ => Ok(None),
    }
}

fn decode_setp(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let ty = spec.ty()?;
    let ftz = spec.has("ftz");
    let op = cmp_op(spec, ty)?;
    let (aux, has_bool) = bool_op(spec);
    let (c, neg) = c_operand(spec, cx, 3, has_bool)?;
    let (p, q) = match &spec.operands[0] {
        Operand::Pair(p, q) => (cx.opnd(&Operand::Name(p.clone()))?, cx.opnd(&Operand::Name(q.clone()))?),
        other => (cx.opnd(other)?, Opnd::Sink),
    };
    if ty.contains("16") && spec.operands[1..3].iter().any(|o| matches!(o, Operand::F32(_) | Operand::F64(_)))
    {
        return Err(format!("a floating-point literal for `setp.{ty}` is not supported; write its bits"));
    }
    let a = cx.opnd_typed(&spec.operands[1], ty)?;
    let b = cx.opnd_typed(&spec.operands[2], ty)?;
    let f = match (ty, ftz) {
        ("f16x2", false) => with_op!(setp_x2, Float<1>, op),
        ("f16x2", true) => with_op!(setp_x2, Float<2>, op),
        ("bf16x2", false) => with_op!(setp_x2, Float<3>, op),
        _ => by_type!(setp, ty, ftz, op),
    };
    if ty.ends_with("x2") && q == Opnd::Sink {
        return Err(format!("`setp.{ty}` needs a `p|q` destination"));
    }
    Ok(Inst::new(Kind::Plain(f), vec![p, q, a, b, c]).with_aux(aux | neg << 2))
}

fn decode_set(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let types = spec.types();
    let [dty, sty] = types[..] else { return Err("`set` needs .dtype.stype".into()) };
    if !matches!(dty, "u32" | "s32" | "f32") {
        return Err(format!("`set` with a .{dty} result is not supported"));
    }
    let ftz = spec.has("ftz");
    let op = cmp_op(spec, sty)?;
    let (aux, has_bool) = bool_op(spec);
    let (c, neg) = c_operand(spec, cx, 3, has_bool)?;
    let d = cx.opnd(&spec.operands[0])?;
    let a = cx.opnd_typed(&spec.operands[1], sty)?;
    let b = cx.opnd_typed(&spec.operands[2], sty)?;
    let f = by_type!(set, sty, ftz, op);
    let float = (dty == "f32") as u64;
    Ok(Inst::new(Kind::Plain(f), vec![d, a, b, c]).with_aux(aux | neg << 2 | float << 3))
}

/// `selp.type d, a, b, c`: `d = c ? a : b` (a negated `!c` is accepted, aux bit 0).
fn decode_selp(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let ty = spec.ty()?;
    let w = crate::ptx::type_size(ty)
        .filter(|&s| (2..=8).contains(&s) && !ty.ends_with("x2"))
        .ok_or(format!("`selp` does not take .{ty}"))?;
    if spec.operands.len() != 4 {
        return Err(format!("expected 4 operands, found {}", spec.operands.len()));
    }
    let d = cx.opnd(&spec.operands[0])?;
    let a = cx.opnd_typed(&spec.operands[1], ty)?;
    let b = cx.opnd_typed(&spec.operands[2], ty)?;
    let (c, neg) = pred_source(&spec.operands[3], cx)?;
    let f: ExecFn = match w {
        2 => selp::<16>,
        4 => selp::<32>,
        _ => selp::<64>,
    };
    Ok(Inst::new(Kind::Plain(f), vec![d, a, b, c]).with_aux(neg))
}

fn selp<const W: u32>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    let neg = i.aux & 1;
    cx.map3(i, |a, b, c| if (c ^ neg) & 1 != 0 { a & mask(W) } else { b & mask(W) });
    Ok(())
}

/// `slct.dtype.s32 d, a, b, c` and `slct{.ftz}.dtype.f32`: `d = c >= 0 ? a : b`. For `.f32`,
/// `-0.0 >= 0` holds and a NaN `c` selects `b`; `.ftz` treats a subnormal `c` as zero.
fn decode_slct(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Inst, String> {
    let types = spec.types();
    let [dty, cty] = types[..] else { return Err("`slct` needs .dtype.ctype".into()) };
    let w = crate::ptx::type_size(dty)
        .filter(|&s| (2..=8).contains(&s) && !dty.ends_with("x2"))
        .ok_or(format!("`slct` does not take .{dty}"))?;
    let ftz = spec.has("ftz");
    macro_rules! by_w {
        ($c:expr) => {
            match w {
                2 => slct::<16, $c> as ExecFn,
                4 => slct::<32, $c>,
                _ => slct::<64, $c>,
            }
        };
    }
    let f = match (cty, ftz) {
        ("s32", false) => by_w!(0),
        ("f32", false) => by_w!(1),
        ("f32", true) => by_w!(2),
        _ => return Err(format!("`slct` compares .s32 or .f32, not .{cty}")),
    };
    if spec.operands.len() != 4 {
        return Err(format!("expected 4 operands, found {}", spec.operands.len()));
    }
    let d = cx.opnd(&spec.operands[0])?;
    let a = cx.opnd_typed(&spec.operands[1], dty)?;
    let b = cx.opnd_typed(&spec.operands[2], dty)?;
    let c = cx.opnd_typed(&spec.operands[3], cty)?;
    Ok(Inst::new(Kind::Plain(f), vec![d, a, b, c]))
}

/// `C`: 0 `.s32`, 1 `.f32`, 2 `.f32.ftz`.
fn slct<const W: u32, const C: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| {
        let take_a = match C {
            0 => c as i32 >= 0,
            1 => f32::from_bits(c as u32) >= 0.0,
            _ => <Float<0> as CmpVal>::load(c).0 >= 0.0,
        };
        if take_a { a & mask(W) } else { b & mask(W) }
    });
    Ok(())
}
