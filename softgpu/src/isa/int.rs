//! Integer arithmetic (PTX ISA §9.7.1 "Integer Arithmetic Instructions"): `add`, `sub`
//! (`.sat.s32`, and the packed `.u16x2`/`.s16x2` forms), `mul` and `mad` (`.lo`/`.hi`/`.wide`,
//! `mad.hi.sat.s32`), `mul24`/`mad24`, `div`, `rem`, `abs`, `neg`, `min`/`max` (`.relu`), `sad`.
//! The extended-precision carry chains (`add.cc`, `addc`, `sub.cc`, `subc`, `mad.cc`, `madc`)
//! live in `carry`, the bit and byte operations (`popc`, `clz`, `brev`, `bfind`, `bfe`, `bfi`,
//! `prmt`, `dp4a`, `dp2a`) in `field`.
//!
//! Registers hold zero-extended bit patterns; each exec fn is monomorphised on an `Int`
//! type that truncates its inputs to the instruction's width (so a sign-extended 64-bit
//! immediate such as `-1` works for every width) and zero-extends its result.
//!
//! Opcodes with a floating-point type (`add.f32`, `min.f16x2`, ...) are left to the float and
//! half families (`Ok(None)`).
//!
//! Integer division by zero: the PTX ISA leaves the result unspecified and GPUs do not trap,
//! so `div` returns all ones (`u::MAX` for unsigned types, `-1` for signed types) and `rem`
//! returns the dividend, which is what `a - (a / b) * b` gives for any quotient when `b == 0`.
//! `div.s` of the most negative value by `-1` wraps to that value, and its `rem` is 0.

mod carry;
mod field;

use crate::exec::Cx;
use crate::fault::Fault;
use crate::program::decode::{DecodeCx, OpSpec};
use crate::program::inst::{ExecFn, Inst, Kind, Opnd};

/// A fixed-width integer as a PTX instruction type sees it.
pub(crate) trait Int: Copy + Ord + Default + 'static {
    const BITS: u32;
    const SIGNED: bool;
    /// The low `BITS` bits of a register or immediate.
    fn of(v: u64) -> Self;
    /// The bit pattern, zero-extended to 64 bits.
    fn bits(self) -> u64;
    /// The value, sign- or zero-extended.
    fn wide(self) -> i128;
    fn wadd(self, o: Self) -> Self;
    fn wsub(self, o: Self) -> Self;
    fn wmul(self, o: Self) -> Self;
    fn wneg(self) -> Self;
    fn wabs(self) -> Self;
    /// Division with the hardware-like results for a zero divisor (see the module docs).
    fn hdiv(self, o: Self) -> Self;
    fn hrem(self, o: Self) -> Self;
    /// `|a - b|` as a bit pattern (no overflow: computed in 128 bits, then truncated).
    fn absdiff(self, o: Self) -> Self {
        Self::of((self.wide() - o.wide()).unsigned_abs() as u64)
    }
    /// The low 128 bits of the full `2 * BITS`-bit product.
    fn product(self, o: Self) -> u128 {
        (self.wide() as u128).wrapping_mul(o.wide() as u128)
    }
}

macro_rules! int_impl {
    ($t:ty, $signed:expr) => {
        impl Int for $t {
            const BITS: u32 = <$t>::BITS;
            const SIGNED: bool = $signed;
            #[inline(always)]
            fn of(v: u64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn bits(self) -> u64 {
                self as u64 & mask(<$t>::BITS)
            }
            #[inline(always)]
            fn wide(self) -> i128 {
                self as i128
            }
            #[inline(always)]
            fn wadd(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline(always)]
            fn wsub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline(always)]
            fn wmul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            #[inline(always)]
            fn wneg(self) -> Self {
                self.wrapping_neg()
            }
            #[inline(always)]
            fn wabs(self) -> Self {
                if self < Self::default() { self.wrapping_neg() } else { self }
            }
            #[inline(always)]
            fn hdiv(self, o: Self) -> Self {
                if o == Self::default() { Self::of(u64::MAX) } else { self.wrapping_div(o) }
            }
            #[inline(always)]
            fn hrem(self, o: Self) -> Self {
                if o == Self::default() { self } else { self.wrapping_rem(o) }
            }
        }
    };
}

int_impl!(u16, false);
int_impl!(u32, false);
int_impl!(u64, false);
int_impl!(i16, true);
int_impl!(i32, true);
int_impl!(i64, true);

/// The low `bits` bits set.
#[inline(always)]
pub(crate) const fn mask(bits: u32) -> u64 {
    if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 }
}

/// The integer type modifier among `mods` (`u32`, `s16x2`, `b64`, ...), the last one wins.
pub(crate) fn int_type<'a>(spec: &OpSpec<'a>) -> Option<&'a str> {
    const INTS: &[&str] =
        &["u16", "u32", "u64", "s16", "s32", "s64", "b16", "b32", "b64", "u16x2", "s16x2", "u8", "s8", "b8"];
    spec.mods.iter().rev().copied().find(|m| INTS.contains(m))
}

/// Whether `spec` names a non-integer type (float, half, pred), which other families own.
fn has_other_type(spec: &OpSpec<'_>) -> bool {
    spec.mods.iter().any(|m| {
        matches!(*m, "f16" | "f16x2" | "bf16" | "bf16x2" | "f32" | "f64" | "tf32" | "pred")
            || m.starts_with("e4m3")
            || m.starts_with("e5m2")
    })
}

/// `f::<T>` for the integer type named `ty` (`u16`..`s64`).
macro_rules! by_int {
    ($ty:expr, $f:ident) => {
        match $ty {
            "u16" => $f::<u16> as ExecFn,
            "u32" => $f::<u32> as ExecFn,
            "u64" => $f::<u64> as ExecFn,
            "s16" => $f::<i16> as ExecFn,
            "s32" => $f::<i32> as ExecFn,
            "s64" => $f::<i64> as ExecFn,
            other => return Err(format!("type .{other} is not supported here")),
        }
    };
}

/// The plain source/destination operands, in order.
pub(crate) fn operands(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>, n: usize) -> Result<Vec<Opnd>, String> {
    if spec.operands.len() != n {
        return Err(format!("expected {n} operands, found {}", spec.operands.len()));
    }
    spec.operands.iter().map(|o| cx.opnd(o)).collect()
}

fn plain(f: ExecFn, ops: Vec<Opnd>) -> Result<Option<Inst>, String> {
    Ok(Some(Inst::new(Kind::Plain(f), ops)))
}

pub fn decode(spec: &OpSpec<'_>, cx: &mut DecodeCx<'_>) -> Result<Option<Inst>, String> {
    const OWNED: &[&str] = &[
        "add", "sub", "mul", "mad", "mul24", "mad24", "div", "rem", "abs", "neg", "min", "max", "sad",
        "addc", "subc", "madc", "popc", "clz", "brev", "bfind", "bfe", "bfi", "prmt", "dp4a", "dp2a",
    ];
    if !OWNED.contains(&spec.base) || has_other_type(spec) {
        return Ok(None);
    }
    if let Some(inst) = field::decode(spec, cx)? {
        return Ok(Some(inst));
    }
    if spec.has("cc") || matches!(spec.base, "addc" | "subc" | "madc") {
        return carry::decode(spec, cx);
    }
    let ty = int_type(spec).ok_or_else(|| format!("`{}` needs an integer type", spec.base))?;
    let sat = spec.has("sat");
    let relu = spec.has("relu");
    let packed = ty.ends_with("x2");
    if packed {
        if sat {
            return Err(format!("`{}.sat` has no .{ty} form", spec.base));
        }
        let f: ExecFn = match (spec.base, ty, relu) {
            ("add", "u16x2", false) => x2::<u16, 0>,
            ("add", "s16x2", false) => x2::<i16, 0>,
            ("sub", "u16x2", false) => x2::<u16, 1>,
            ("sub", "s16x2", false) => x2::<i16, 1>,
            ("min", "u16x2", false) => x2::<u16, 2>,
            ("min", "s16x2", false) => x2::<i16, 2>,
            ("max", "u16x2", false) => x2::<u16, 3>,
            ("max", "s16x2", false) => x2::<i16, 3>,
            ("min", "s16x2", true) => x2::<i16, 4>,
            ("max", "s16x2", true) => x2::<i16, 5>,
            _ => return Err(format!("`{}.{ty}` is not a PTX instruction", spec.base)),
        };
        return plain(f, operands(spec, cx, 3)?);
    }
    if ty.starts_with('b') || ty.ends_with('8') {
        return Err(format!("`{}` has no .{ty} form", spec.base));
    }
    if (sat && !(ty == "s32" && matches!(spec.base, "add" | "sub" | "mad" | "mad24")))
        || (relu && !(ty == "s32" && matches!(spec.base, "min" | "max")))
    {
        return Err(format!("`{}` with these modifiers is not supported", spec.base));
    }
    let hi = spec.has("hi");
    let wide = spec.has("wide");
    let lo = spec.has("lo");
    let (f, n): (ExecFn, usize) = match spec.base {
        "add" if sat => (add_sat, 3),
        "sub" if sat => (sub_sat, 3),
        "add" => (by_int!(ty, add), 3),
        "sub" => (by_int!(ty, sub), 3),
        "mul" | "mad" if wide && ty.ends_with("64") => {
            return Err(format!("`{}.wide` has no 64-bit form", spec.base));
        }
        "mul" if hi => (by_int!(ty, mul_hi), 3),
        "mul" if wide => (by_int!(ty, mul_wide), 3),
        "mul" if lo => (by_int!(ty, mul_lo), 3),
        "mad" if hi && sat => (mad_hi_sat, 4),
        "mad" if hi => (by_int!(ty, mad_hi), 4),
        "mad" if wide => (by_int!(ty, mad_wide), 4),
        "mad" if lo => (by_int!(ty, mad_lo), 4),
        "mul24" | "mad24" if !matches!(ty, "u32" | "s32") => {
            return Err(format!("`{}` takes .u32 or .s32", spec.base));
        }
        "mul24" | "mad24" if !(hi || lo) => return Err(format!("`{}` needs .hi or .lo", spec.base)),
        "mul24" => (mul24_fn(ty == "s32", hi), 3),
        "mad24" if sat && !hi => return Err("`mad24.sat` needs .hi".into()),
        "mad24" => (mad24_fn(ty == "s32", hi, sat), 4),
        "div" => (by_int!(ty, div), 3),
        "rem" => (by_int!(ty, rem), 3),
        "abs" | "neg" if !ty.starts_with('s') => return Err(format!("`{}` takes a signed type", spec.base)),
        "abs" => (by_int!(ty, abs), 2),
        "neg" => (by_int!(ty, neg), 2),
        "min" if relu => (min_relu, 3),
        "max" if relu => (max_relu, 3),
        "min" => (by_int!(ty, min), 3),
        "max" => (by_int!(ty, max), 3),
        "sad" => (by_int!(ty, sad), 4),
        _ => return Err(format!("`{}` needs .lo, .hi or .wide", spec.base)),
    };
    plain(f, operands(spec, cx, n)?)
}

fn add<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| T::of(a).wadd(T::of(b)).bits());
    Ok(())
}

fn sub<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| T::of(a).wsub(T::of(b)).bits());
    Ok(())
}

/// `add.sat.s32`: clamps to `i32::MIN..=i32::MAX` instead of wrapping.
fn add_sat(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| (a as i32).saturating_add(b as i32).bits());
    Ok(())
}

fn sub_sat(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| (a as i32).saturating_sub(b as i32).bits());
    Ok(())
}

fn mul_lo<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| T::of(a).wmul(T::of(b)).bits());
    Ok(())
}

/// `.hi`: bits `2n-1..n` of the full product (signed for `.s` types).
fn mul_hi<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| (T::of(a).product(T::of(b)) >> T::BITS) as u64 & mask(T::BITS));
    Ok(())
}

/// `.wide`: the whole `2n`-bit product (16- and 32-bit types only).
fn mul_wide<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| T::of(a).product(T::of(b)) as u64 & mask(2 * T::BITS));
    Ok(())
}

fn mad_lo<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| T::of(a).wmul(T::of(b)).wadd(T::of(c)).bits());
    Ok(())
}

fn mad_hi<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| T::of((T::of(a).product(T::of(b)) >> T::BITS) as u64).wadd(T::of(c)).bits());
    Ok(())
}

/// `mad.wide`: `c` and `d` are `2n` bits wide.
fn mad_wide<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| (T::of(a).product(T::of(b)) as u64).wrapping_add(c) & mask(2 * T::BITS));
    Ok(())
}

/// `mad.hi.sat.s32`: the high word of the product plus `c`, clamped to the `s32` range.
fn mad_hi_sat(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| {
        let hi = (a as i32 as i64 * b as i32 as i64) >> 32;
        sat32(hi + c as i32 as i64)
    });
    Ok(())
}

fn sat32(v: i64) -> u64 {
    (v.clamp(i32::MIN as i64, i32::MAX as i64) as i32).bits()
}

/// The 48-bit product of the low 24 bits of `a` and `b` (sign-extended for `.s32`).
#[inline(always)]
fn prod24<const S: bool>(a: u64, b: u64) -> i64 {
    let ext = |v: u64| if S { ((v as i64) << 40) >> 40 } else { (v & 0xff_ffff) as i64 };
    ext(a) * ext(b)
}

fn mul24_fn(signed: bool, hi: bool) -> ExecFn {
    fn run<const S: bool, const HI: bool>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
        cx.map2(i, |a, b| {
            let p = prod24::<S>(a, b);
            (if HI { p >> 16 } else { p }) as u64 & 0xffff_ffff
        });
        Ok(())
    }
    match (signed, hi) {
        (false, false) => run::<false, false>,
        (false, true) => run::<false, true>,
        (true, false) => run::<true, false>,
        (true, true) => run::<true, true>,
    }
}

fn mad24_fn(signed: bool, hi: bool, sat: bool) -> ExecFn {
    fn run<const S: bool, const HI: bool, const SAT: bool>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
        cx.map3(i, |a, b, c| {
            let p = prod24::<S>(a, b);
            let t = if HI { p >> 16 } else { p };
            if SAT {
                sat32(t as i32 as i64 + c as i32 as i64)
            } else {
                (t as u64).wrapping_add(c) & 0xffff_ffff
            }
        });
        Ok(())
    }
    match (signed, hi, sat) {
        (false, false, _) => run::<false, false, false>,
        (false, true, _) => run::<false, true, false>,
        (true, false, _) => run::<true, false, false>,
        (true, true, false) => run::<true, true, false>,
        (true, true, true) => run::<true, true, true>,
    }
}

fn div<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| T::of(a).hdiv(T::of(b)).bits());
    Ok(())
}

fn rem<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| T::of(a).hrem(T::of(b)).bits());
    Ok(())
}

/// `abs` of the most negative value is that value (two's complement wraps).
fn abs<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| T::of(a).wabs().bits());
    Ok(())
}

fn neg<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map1(i, |a| T::of(a).wneg().bits());
    Ok(())
}

fn min<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| T::of(a).min(T::of(b)).bits());
    Ok(())
}

fn max<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| T::of(a).max(T::of(b)).bits());
    Ok(())
}

/// `.relu`: a negative result is clamped to 0.
fn min_relu(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| (a as i32).min(b as i32).max(0) as u64);
    Ok(())
}

fn max_relu(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| (a as i32).max(b as i32).max(0) as u64);
    Ok(())
}

/// `sad`: `c + |a - b|`.
fn sad<T: Int>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map3(i, |a, b, c| T::of(a).absdiff(T::of(b)).wadd(T::of(c)).bits());
    Ok(())
}

/// The packed `.u16x2`/`.s16x2` forms: the operation on each half-word. `OP`: 0 add, 1 sub,
/// 2 min, 3 max, 4 min.relu, 5 max.relu.
fn x2<T: Int, const OP: u8>(cx: &mut Cx<'_>, i: &Inst) -> Result<(), Fault> {
    cx.map2(i, |a, b| {
        let half = |s: u32| {
            let (x, y) = (T::of(a >> s), T::of(b >> s));
            let r = match OP {
                0 => x.wadd(y),
                1 => x.wsub(y),
                2 => x.min(y),
                3 => x.max(y),
                4 => x.min(y).max(T::default()),
                _ => x.max(y).max(T::default()),
            };
            r.bits() << s
        };
        half(0) | half(16)
    });
    Ok(())
}
