//! Scalar IEEE arithmetic in every PTX rounding mode, on bit patterns.
//!
//! Round-to-nearest uses the host's IEEE operations directly (f32 `+ - * /`, `sqrt`,
//! `mul_add`). Directed rounding of f32 add/sub/mul/fma computes the exact result as an f64
//! plus its exact error (a product of two f32 is exact in f64; the error of an f64 sum is
//! itself an f64), then rounds that once with [`round::round_f64`]. Everything else with a
//! directed rounding (f32 div/sqrt, all f64) goes through the exact significand arithmetic
//! of [`round`].

use super::round::{self, Exact, F32, F64, Fmt, Rnd, Val};

/// The exact value of a finite or zero unpacked value (NaN and infinities are the caller's).
fn exact(v: Val) -> Exact {
    match v {
        Val::Fin(x) => x,
        Val::Zero(neg) => Exact { neg, m: 0, e: 0 },
        Val::Nan | Val::Inf(_) => unreachable!("special values are handled before"),
    }
}

/// A NaN operand quieted (f64 keeps payloads, PTX ISA 9.7.3), else the generated NaN.
fn nan_of(a: u64, b: u64, f: Fmt) -> u64 {
    let quiet = 1 << (f.frac - 1);
    if f.is_nan(a) {
        a | quiet
    } else if f.is_nan(b) {
        b | quiet
    } else {
        f.nan()
    }
}

/// `a + b` in format `f` (f32 or f64) rounded by `r`, exactly.
pub fn soft_add(a: u64, b: u64, f: Fmt, r: Rnd) -> u64 {
    match (round::unpack(a, f), round::unpack(b, f)) {
        (Val::Nan, _) | (_, Val::Nan) => nan_of(a, b, f),
        (Val::Inf(x), Val::Inf(y)) => {
            if x == y {
                f.inf(x)
            } else {
                f.nan()
            }
        }
        (Val::Inf(x), _) | (_, Val::Inf(x)) => f.inf(x),
        (x, y) => round::round(round::add(exact(x), exact(y), r), f, r),
    }
}

/// `a * b`, exactly rounded.
pub fn soft_mul(a: u64, b: u64, f: Fmt, r: Rnd) -> u64 {
    match (round::unpack(a, f), round::unpack(b, f)) {
        (Val::Nan, _) | (_, Val::Nan) => nan_of(a, b, f),
        (Val::Inf(_), Val::Zero(_)) | (Val::Zero(_), Val::Inf(_)) => f.nan(),
        (Val::Inf(x), y) | (y, Val::Inf(x)) => f.inf(x != sign_of(y)),
        (x, y) => round::round(round::mul(exact(x), exact(y)), f, r),
    }
}

/// `a * b + c` with one rounding.
pub fn soft_fma(a: u64, b: u64, c: u64, f: Fmt, r: Rnd) -> u64 {
    let (va, vb, vc) = (round::unpack(a, f), round::unpack(b, f), round::unpack(c, f));
    if matches!(va, Val::Nan) || matches!(vb, Val::Nan) || matches!(vc, Val::Nan) {
        return nan_of(a, if f.is_nan(b) { b } else { c }, f);
    }
    let prod_neg = sign_of(va) != sign_of(vb);
    let prod_inf = matches!(va, Val::Inf(_)) || matches!(vb, Val::Inf(_));
    if prod_inf {
        if matches!(va, Val::Zero(_)) || matches!(vb, Val::Zero(_)) {
            return f.nan();
        }
        return match vc {
            Val::Inf(cn) if cn != prod_neg => f.nan(),
            _ => f.inf(prod_neg),
        };
    }
    if let Val::Inf(cn) = vc {
        return f.inf(cn);
    }
    let p = round::mul(exact(va), exact(vb));
    let p = Exact { neg: prod_neg, ..p };
    round::round(round::add(p, exact(vc), r), f, r)
}

/// `a / b`, exactly rounded.
pub fn soft_div(a: u64, b: u64, f: Fmt, r: Rnd) -> u64 {
    match (round::unpack(a, f), round::unpack(b, f)) {
        (Val::Nan, _) | (_, Val::Nan) => nan_of(a, b, f),
        (Val::Inf(_), Val::Inf(_)) | (Val::Zero(_), Val::Zero(_)) => f.nan(),
        (Val::Inf(x), y) => f.inf(x != sign_of(y)),
        (x, Val::Zero(y)) => f.inf(sign_of(x) != y),
        (x, Val::Inf(y)) | (x @ Val::Zero(_), Val::Fin(Exact { neg: y, .. })) => {
            if sign_of(x) != y {
                f.sign()
            } else {
                0
            }
        }
        (Val::Fin(x), Val::Fin(y)) => round::round(round::div(x, y), f, r),
    }
}

/// `sqrt(a)`, exactly rounded (`sqrt(-0) = -0`, negative → NaN).
pub fn soft_sqrt(a: u64, f: Fmt, r: Rnd) -> u64 {
    match round::unpack(a, f) {
        Val::Nan => nan_of(a, a, f),
        Val::Zero(_) => a,
        Val::Inf(false) => a,
        Val::Inf(true) | Val::Fin(Exact { neg: true, .. }) => f.nan(),
        Val::Fin(x) => round::round(round::sqrt(x), f, r),
    }
}

fn sign_of(v: Val) -> bool {
    match v {
        Val::Inf(n) | Val::Zero(n) => n,
        Val::Fin(x) => x.neg,
        Val::Nan => false,
    }
}

/// The sign of an exact zero sum `x + y` (operand signs `xn`, `yn`): theirs if they agree,
/// else `-0` only when rounding down (IEEE 754 §6.3).
#[inline]
fn zero_sum(xn: bool, yn: bool, r: Rnd) -> f32 {
    if xn == yn && xn || xn != yn && r == Rnd::Down { -0.0 } else { 0.0 }
}

/// f32 `a + b` rounded by `r`.
#[inline(always)]
pub fn add32(a: f32, b: f32, r: Rnd) -> f32 {
    if r == Rnd::Nearest || !(a.is_finite() && b.is_finite()) {
        return a + b;
    }
    let (s, t) = round::two_sum(a as f64, b as f64);
    if s == 0.0 {
        return zero_sum(a.is_sign_negative(), b.is_sign_negative(), r);
    }
    f32::from_bits(round::round_f64(s, t, F32, r) as u32)
}

/// f32 `a * b` rounded by `r`.
#[inline(always)]
pub fn mul32(a: f32, b: f32, r: Rnd) -> f32 {
    let p = a as f64 * b as f64;
    if r == Rnd::Nearest || p == 0.0 || !p.is_finite() {
        return a * b;
    }
    f32::from_bits(round::round_f64(p, 0.0, F32, r) as u32)
}

/// f32 `a * b + c` with one rounding by `r`.
#[inline(always)]
pub fn fma32(a: f32, b: f32, c: f32, r: Rnd) -> f32 {
    if r == Rnd::Nearest || !(a.is_finite() && b.is_finite() && c.is_finite()) {
        return a.mul_add(b, c);
    }
    let p = a as f64 * b as f64;
    let (s, t) = round::two_sum(p, c as f64);
    if s == 0.0 {
        return zero_sum(p.is_sign_negative(), c.is_sign_negative(), r);
    }
    f32::from_bits(round::round_f64(s, t, F32, r) as u32)
}

/// f32 `a / b` rounded by `r`.
#[inline]
pub fn div32(a: f32, b: f32, r: Rnd) -> f32 {
    if r == Rnd::Nearest {
        return a / b;
    }
    f32::from_bits(soft_div(a.to_bits() as u64, b.to_bits() as u64, F32, r) as u32)
}

/// f32 `sqrt(a)` rounded by `r`.
#[inline]
pub fn sqrt32(a: f32, r: Rnd) -> f32 {
    if r == Rnd::Nearest {
        return a.sqrt();
    }
    f32::from_bits(soft_sqrt(a.to_bits() as u64, F32, r) as u32)
}

/// f64 `a + b` rounded by `r`.
#[inline]
pub fn add64(a: f64, b: f64, r: Rnd) -> f64 {
    if r == Rnd::Nearest {
        return a + b;
    }
    f64::from_bits(soft_add(a.to_bits(), b.to_bits(), F64, r))
}

#[inline]
pub fn mul64(a: f64, b: f64, r: Rnd) -> f64 {
    if r == Rnd::Nearest {
        return a * b;
    }
    f64::from_bits(soft_mul(a.to_bits(), b.to_bits(), F64, r))
}

#[inline]
pub fn fma64(a: f64, b: f64, c: f64, r: Rnd) -> f64 {
    if r == Rnd::Nearest {
        return a.mul_add(b, c);
    }
    f64::from_bits(soft_fma(a.to_bits(), b.to_bits(), c.to_bits(), F64, r))
}

#[inline]
pub fn div64(a: f64, b: f64, r: Rnd) -> f64 {
    if r == Rnd::Nearest {
        return a / b;
    }
    f64::from_bits(soft_div(a.to_bits(), b.to_bits(), F64, r))
}

#[inline]
pub fn sqrt64(a: f64, r: Rnd) -> f64 {
    if r == Rnd::Nearest {
        return a.sqrt();
    }
    f64::from_bits(soft_sqrt(a.to_bits(), F64, r))
}

/// An order key of a non-NaN bit pattern in format `f`: monotone in the value, with
/// `-0 < +0` (PTX ISA 9.7.3.11/12 and 9.7.4.7/8: "+0.0 > -0.0").
#[inline(always)]
fn key(bits: u64, f: Fmt) -> i64 {
    if f.is_neg(bits) { -((bits & !f.sign()) as i64) - 1 } else { bits as i64 }
}

/// `min`/`max` of two bit patterns in format `f` (PTX ISA 9.7.3.11 min, 9.7.3.12 max): a NaN
/// operand yields the other operand; two NaNs, or any NaN under `.NaN`, the canonical NaN.
#[inline(always)]
pub fn min_max(a: u64, b: u64, f: Fmt, max: bool, nan: bool) -> u64 {
    match (f.is_nan(a), f.is_nan(b)) {
        (true, true) => f.nan(),
        (true, false) | (false, true) if nan => f.nan(),
        (true, false) => b,
        (false, true) => a,
        (false, false) => {
            let a_wins = if max { key(a, f) > key(b, f) } else { key(a, f) < key(b, f) };
            if a_wins { a } else { b }
        }
    }
}

/// `min`/`max` with `.xorsign.abs`: the extreme of the magnitudes, with the XOR of the input
/// signs unless the result is NaN.
#[inline(always)]
pub fn min_max_xorsign(a: u64, b: u64, f: Fmt, max: bool, nan: bool) -> u64 {
    let sign = (a ^ b) & f.sign();
    let d = min_max(a & !f.sign(), b & !f.sign(), f, max, nan);
    if f.is_nan(d) { d } else { d | sign }
}

/// `.sat`: clamp to [0, 1], NaN (and -0) to +0.
#[inline(always)]
pub fn sat32(x: f32) -> f32 {
    if x.is_nan() || x <= 0.0 {
        0.0
    } else if x > 1.0 {
        1.0
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    //! Cross-checks of the two exact paths: the f64-with-error path of f32 add/mul/fma and
    //! the significand arithmetic of `soft_*`, over the whole f32 range (far-apart exponents,
    //! sub-normals, overflow), and `soft_*` against the host's IEEE f64 to nearest.
    use super::*;
    use rand::{Rng, SeedableRng};

    fn any32(r: &mut rand::rngs::StdRng) -> f32 {
        let b: u32 = r.random();
        // Mostly finite; a few infinities and NaNs through the random exponent.
        f32::from_bits(if r.random_range(0..8) == 0 { b & 0x807f_ffff } else { b })
    }

    fn same(a: u64, b: u64, f: Fmt) -> bool {
        a == b || (f.is_nan(a) && f.is_nan(b))
    }

    #[test]
    fn f32_fast_and_soft_paths_agree() {
        let mut r = rand::rngs::StdRng::seed_from_u64(41);
        for _ in 0..20000 {
            let (a, b, c) = (any32(&mut r), any32(&mut r), any32(&mut r));
            for rnd in [Rnd::Nearest, Rnd::Zero, Rnd::Down, Rnd::Up] {
                let (x, y, z) = (a.to_bits() as u64, b.to_bits() as u64, c.to_bits() as u64);
                let add = add32(a, b, rnd).to_bits() as u64;
                assert!(same(add, soft_add(x, y, F32, rnd), F32), "add {a:e} {b:e} {rnd:?}");
                let mul = mul32(a, b, rnd).to_bits() as u64;
                assert!(same(mul, soft_mul(x, y, F32, rnd), F32), "mul {a:e} {b:e} {rnd:?}");
                let fma = fma32(a, b, c, rnd).to_bits() as u64;
                assert!(same(fma, soft_fma(x, y, z, F32, rnd), F32), "fma {a:e} {b:e} {c:e} {rnd:?}");
            }
        }
    }

    #[test]
    fn soft_f64_to_nearest_matches_the_host() {
        let mut r = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..20000 {
            let (a, b, c): (f64, f64, f64) =
                (f64::from_bits(r.random()), f64::from_bits(r.random()), f64::from_bits(r.random()));
            let (x, y, z) = (a.to_bits(), b.to_bits(), c.to_bits());
            let n = Rnd::Nearest;
            assert!(same((a + b).to_bits(), soft_add(x, y, F64, n), F64), "add {a:e} {b:e}");
            assert!(same((a * b).to_bits(), soft_mul(x, y, F64, n), F64), "mul {a:e} {b:e}");
            assert!(same(a.mul_add(b, c).to_bits(), soft_fma(x, y, z, F64, n), F64), "fma {a:e} {b:e} {c:e}");
            assert!(same((a / b).to_bits(), soft_div(x, y, F64, n), F64), "div {a:e} {b:e}");
            assert!(same(a.abs().sqrt().to_bits(), soft_sqrt(x & !F64.sign(), F64, n), F64), "sqrt {a:e}");
        }
    }
}
