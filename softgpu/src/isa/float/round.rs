//! Exact binary floating point: values as `±m·2^e` with an integer significand, and one
//! rounding routine to any IEEE binary format (f64, f32, f16, bf16, tf32) in any PTX rounding
//! mode. The families use it wherever the host's own arithmetic cannot give the result PTX
//! asks for: directed rounding (`.rz .rm .rp`), conversions from f64 to the narrow formats
//! (which must not round twice), integer-to-float conversions in every mode.
//!
//! PTX ISA 9.7.3 (Floating-Point Instructions) and 9.7.9.21 (cvt): `.rn` rounds the mantissa
//! LSB to nearest even, `.rz` towards zero, `.rm` towards negative infinity, `.rp` towards
//! positive infinity; `.rna` (cvt to tf32) to nearest with ties away from zero.
//!
//! The host path for round-to-nearest stays the native one: f32 `+ - * /` and `sqrt` are
//! IEEE operations, and `mul_add` is a correctly rounded fused multiply-add.

use std::cmp::Ordering;

/// A rounding direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rnd {
    /// `.rn`: to nearest, ties to even.
    Nearest,
    /// `.rz`: towards zero.
    Zero,
    /// `.rm`: towards negative infinity.
    Down,
    /// `.rp`: towards positive infinity.
    Up,
    /// `.rna`: to nearest, ties away from zero.
    NearestAway,
}

impl Rnd {
    /// The rounding named by a floating-point rounding modifier (`rn`, `rz`, `rm`, `rp`, `rna`).
    pub fn from_mod(m: &str) -> Option<Rnd> {
        Some(match m {
            "rn" => Rnd::Nearest,
            "rz" => Rnd::Zero,
            "rm" => Rnd::Down,
            "rp" => Rnd::Up,
            "rna" => Rnd::NearestAway,
            _ => return None,
        })
    }

    /// As a small number, for const-generic exec fns (`Nearest` is 0).
    pub const fn code(self) -> u8 {
        match self {
            Rnd::Nearest => 0,
            Rnd::Zero => 1,
            Rnd::Down => 2,
            Rnd::Up => 3,
            Rnd::NearestAway => 4,
        }
    }

    pub const fn from_code(c: u8) -> Rnd {
        match c {
            1 => Rnd::Zero,
            2 => Rnd::Down,
            3 => Rnd::Up,
            4 => Rnd::NearestAway,
            _ => Rnd::Nearest,
        }
    }
}

/// An IEEE binary interchange format: stored fraction bits and exponent bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmt {
    pub frac: u32,
    pub exp: u32,
}

pub const F64: Fmt = Fmt { frac: 52, exp: 11 };
pub const F32: Fmt = Fmt { frac: 23, exp: 8 };
pub const F16: Fmt = Fmt { frac: 10, exp: 5 };
pub const BF16: Fmt = Fmt { frac: 7, exp: 8 };
/// TF32 as a format of its own (the caller places it in the top 19 bits of an f32).
pub const TF32: Fmt = Fmt { frac: 10, exp: 8 };

impl Fmt {
    pub const fn bias(self) -> i32 {
        (1 << (self.exp - 1)) - 1
    }

    pub const fn sign(self) -> u64 {
        1 << (self.frac + self.exp)
    }

    const fn exp_mask(self) -> u64 {
        ((1 << self.exp) - 1) << self.frac
    }

    const fn frac_mask(self) -> u64 {
        (1 << self.frac) - 1
    }

    pub const fn inf(self, neg: bool) -> u64 {
        self.exp_mask() | if neg { self.sign() } else { 0 }
    }

    /// The largest finite magnitude, with a sign.
    pub const fn max_finite(self, neg: bool) -> u64 {
        (self.exp_mask() - (1 << self.frac)) | self.frac_mask() | if neg { self.sign() } else { 0 }
    }

    /// The NaN the GPU generates: every exponent and fraction bit set, sign clear
    /// (0x7fffffff for f32, 0x7fff for f16 and bf16).
    pub const fn nan(self) -> u64 {
        self.exp_mask() | self.frac_mask()
    }

    pub const fn is_nan(self, bits: u64) -> bool {
        bits & self.exp_mask() == self.exp_mask() && bits & self.frac_mask() != 0
    }

    pub const fn is_inf(self, bits: u64) -> bool {
        bits & !self.sign() == self.exp_mask()
    }

    /// A sub-normal (non-zero, zero exponent).
    pub const fn is_subnormal(self, bits: u64) -> bool {
        bits & self.exp_mask() == 0 && bits & self.frac_mask() != 0
    }

    pub const fn is_neg(self, bits: u64) -> bool {
        bits & self.sign() != 0
    }

    /// `.ftz`: a sub-normal becomes a zero of the same sign.
    pub const fn flush(self, bits: u64) -> u64 {
        if self.is_subnormal(bits) { bits & self.sign() } else { bits }
    }
}

/// An unpacked value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val {
    Nan,
    Inf(bool),
    Zero(bool),
    /// `±m·2^e`, `m > 0`.
    Fin(Exact),
}

/// A finite value `±m·2^e`, exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exact {
    pub neg: bool,
    pub m: u128,
    pub e: i32,
}

/// The value of `bits` in format `f`.
pub fn unpack(bits: u64, f: Fmt) -> Val {
    let neg = f.is_neg(bits);
    let be = ((bits & f.exp_mask()) >> f.frac) as i32;
    let m = bits & f.frac_mask();
    let all = (1 << f.exp) - 1;
    if be == all {
        return if m == 0 { Val::Inf(neg) } else { Val::Nan };
    }
    if be == 0 {
        if m == 0 {
            return Val::Zero(neg);
        }
        return Val::Fin(Exact { neg, m: m as u128, e: 1 - f.bias() - f.frac as i32 });
    }
    Val::Fin(Exact { neg, m: (m | 1 << f.frac) as u128, e: be - f.bias() - f.frac as i32 })
}

fn bitlen(m: u128) -> u32 {
    128 - m.leading_zeros()
}

/// Rounds `x` (exact) to format `f` in direction `r`: the bit pattern, with overflow to
/// infinity or to the largest finite value as the direction says (IEEE 754 §7.4).
pub fn round(x: Exact, f: Fmt, r: Rnd) -> u64 {
    let sign = if x.neg { f.sign() } else { 0 };
    if x.m == 0 {
        return sign;
    }
    let frac = f.frac as i32;
    let emin = 1 - f.bias();
    // The exponent of the leading bit, and of the last bit the format keeps there.
    let lead = x.e + bitlen(x.m) as i32 - 1;
    let mut q = lead.max(emin) - frac;
    let shift = q - x.e;
    let (kept, half, inexact) = if shift <= 0 {
        (x.m << (-shift) as u32, Ordering::Less, false)
    } else if shift > 128 {
        (0, Ordering::Less, true)
    } else if shift == 128 {
        (0, x.m.cmp(&(1 << 127)), true)
    } else {
        let rest = x.m & ((1u128 << shift) - 1);
        (x.m >> shift, rest.cmp(&(1u128 << (shift - 1))), rest != 0)
    };
    let up = match r {
        Rnd::Nearest => half == Ordering::Greater || (half == Ordering::Equal && kept & 1 == 1),
        Rnd::NearestAway => half != Ordering::Less,
        Rnd::Zero => false,
        Rnd::Down => x.neg && inexact,
        Rnd::Up => !x.neg && inexact,
    };
    let mut kept = kept + up as u128;
    if kept >> (frac + 1) != 0 {
        kept >>= 1;
        q += 1;
    }
    if kept >> frac == 0 {
        // Sub-normal (or zero after rounding): the exponent field is 0.
        return sign | kept as u64;
    }
    let exp = q + frac;
    if exp > f.bias() {
        let to_inf = match r {
            Rnd::Nearest | Rnd::NearestAway => true,
            Rnd::Zero => false,
            Rnd::Down => x.neg,
            Rnd::Up => !x.neg,
        };
        return if to_inf { f.inf(x.neg) } else { f.max_finite(x.neg) };
    }
    sign | ((exp + f.bias()) as u64) << f.frac | (kept as u64 & f.frac_mask())
}

/// Rounds `s + tail` to `f`, where `s` is a finite f64 and `tail` is the exact error of the
/// f64 operation that gave `s` (|tail| ≤ half an ulp of `s`; 0 when `s` is exact). The tail
/// only says on which side of `s` the exact value lies, which is all the rounding needs:
/// every boundary of a narrower format is a multiple of `s`'s ulp.
pub fn round_f64(s: f64, tail: f64, f: Fmt, r: Rnd) -> u64 {
    let bits = s.to_bits();
    let be = (bits >> 52 & 0x7ff) as i32;
    // Fast path: to nearest, a normal result in a narrower format. The f64 exponent and
    // fraction, shifted and re-biased, are the result's; rounding up may carry into the
    // exponent, up to the infinity pattern, as it should.
    if r == Rnd::Nearest && f.frac < 52 && be - 1023 >= 1 - f.bias() && be - 1023 <= f.bias() {
        let shift = 52 - f.frac;
        let rest = bits & ((1 << shift) - 1);
        let half = 1u64 << (shift - 1);
        let neg = bits >> 63 != 0;
        let t = ((bits & !(1 << 63)) >> shift) - (((1023 - f.bias()) as u64) << f.frac);
        let up = rest > half || rest == half && (if tail == 0.0 { t & 1 == 1 } else { (tail > 0.0) != neg });
        return (t + up as u64) | if neg { f.sign() } else { 0 };
    }
    match unpack(bits, F64) {
        Val::Fin(mut x) => {
            x.m <<= 2;
            x.e -= 2;
            if tail != 0.0 {
                if (tail > 0.0) != x.neg {
                    x.m += 1;
                } else {
                    x.m -= 1;
                }
            }
            round(x, f, r)
        }
        Val::Zero(neg) => {
            if neg {
                f.sign()
            } else {
                0
            }
        }
        Val::Inf(neg) => f.inf(neg),
        Val::Nan => f.nan(),
    }
}

/// `(s, t)` with `s = fl(a + b)` and `s + t = a + b` exactly (Knuth's two-sum).
#[inline(always)]
pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let t = (a - (s - bb)) + (b - bb);
    (s, t)
}

/// The exact sum of two exact values, each significand below 2^106. A sum whose low bits
/// are too far below the larger operand to fit is kept with a sticky bit (two bits below
/// anything that can matter to a format of at most 53 bits). An exact zero takes the sign
/// IEEE gives it: that of the operands if they agree, else `-0` only when rounding down.
pub fn add(a: Exact, b: Exact, r: Rnd) -> Exact {
    if a.m == 0 && b.m == 0 {
        let neg = if a.neg == b.neg { a.neg } else { r == Rnd::Down };
        return Exact { neg, m: 0, e: 0 };
    }
    if a.m == 0 {
        return b;
    }
    if b.m == 0 {
        return a;
    }
    let (hi, lo) = if a.e >= b.e { (a, b) } else { (b, a) };
    let d = (hi.e as i64 - lo.e as i64) as u64;
    let room = 125 - bitlen(hi.m) as u64;
    let k = d.min(room);
    let hm = hi.m << k;
    let he = hi.e - k as i32;
    let s = d - k;
    let (lm, sticky) = if s == 0 {
        (lo.m, false)
    } else if s >= 128 {
        (0, true)
    } else {
        (lo.m >> s, lo.m & ((1u128 << s) - 1) != 0)
    };
    let (neg, m) = if hi.neg == lo.neg {
        (hi.neg, (hm + lm) * 4 + sticky as u128)
    } else {
        let diff = (hm * 4) as i128 - ((lm * 4) as i128 + sticky as i128);
        match diff.cmp(&0) {
            Ordering::Equal => return Exact { neg: r == Rnd::Down, m: 0, e: 0 },
            Ordering::Greater => (hi.neg, diff as u128),
            Ordering::Less => (lo.neg, diff.unsigned_abs()),
        }
    };
    Exact { neg, m, e: he - 2 }
}

/// The exact product (significands below 2^64 each).
pub fn mul(a: Exact, b: Exact) -> Exact {
    Exact { neg: a.neg != b.neg, m: a.m * b.m, e: a.e + b.e }
}

/// `a / b` for non-zero significands below 2^53: a 75-bit quotient with a sticky bit.
pub fn div(a: Exact, b: Exact) -> Exact {
    let (am, ae) = normalize53(a);
    let (bm, be) = normalize53(b);
    let n = am << 74;
    let q = n / bm;
    let rest = n % bm;
    Exact { neg: a.neg != b.neg, m: q * 4 + (rest != 0) as u128, e: ae - 74 - be - 2 }
}

/// The square root of a positive value: a 60-bit root with a sticky bit.
pub fn sqrt(a: Exact) -> Exact {
    let (m, e) = normalize53(a);
    // Scale to about 120 bits with an even exponent.
    let (m, e) = if e % 2 == 0 { (m << 66, e - 66) } else { (m << 67, e - 67) };
    let mut root = (m as f64).sqrt() as u128;
    // Newton steps from the f64 estimate, then exact correction.
    for _ in 0..2 {
        if root > 0 {
            root = (root + m / root) / 2;
        }
    }
    while root * root > m {
        root -= 1;
    }
    while (root + 1) * (root + 1) <= m {
        root += 1;
    }
    let exact = root * root == m;
    Exact { neg: false, m: root * 4 + (!exact) as u128, e: e / 2 - 2 }
}

fn normalize53(a: Exact) -> (u128, i32) {
    let n = bitlen(a.m) as i32;
    if n < 53 { (a.m << (53 - n), a.e - (53 - n)) } else { (a.m, a.e) }
}

/// An integer as an exact value.
pub fn from_int(v: i128) -> Exact {
    Exact { neg: v < 0, m: v.unsigned_abs(), e: 0 }
}
