//! Small f32 kernels shared by several ops, written so that loops over slices auto-vectorise:
//! an `exp` and an `erf` without library calls, sums with independent accumulators, and
//! [`vectorized`], which runs a leaf loop from a copy compiled for AVX-512 (or AVX2 and FMA)
//! when the CPU has them.

/// Runs `f`, compiled for AVX-512 (else AVX2 and FMA) when this x86-64 CPU has them, as is.
///
/// The default target is x86-64 with SSE2 only, so auto-vectorised loops are 4 lanes wide;
/// inside `f` they get 16 (AVX-512) or 8 lanes. Only code inlined into `f` benefits, so `f`
/// should be a leaf loop over slices (mark the closure `#[inline(always)]`) that calls nothing
/// but `#[inline(always)]` helpers such as [`exp_f32`]. The results do not depend on the path:
/// Rust never fuses a multiply and an add by itself, and the helpers fix their summation order.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// The CPU must support AVX-512 F, BW, DQ and VL.
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2_fma<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has the features `avx512` is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features `avx2_fma` is compiled for.
            return unsafe { avx2_fma(f) };
        }
    }
    f()
}

/// Rounds f32 to bf16 bits, to nearest even, NaN kept quiet: the bits `half::bf16::from_f32`
/// gives, without its branches, so that slice loops vectorise.
#[inline(always)]
pub(crate) fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7FFF + (bits >> 16 & 1)) >> 16;
    let nan = bits & 0x7FFF_FFFF > 0x7F80_0000;
    (if nan { bits >> 16 | 0x40 } else { rounded }) as u16
}

/// `dst = src` rounded to bf16 ([`bf16_bits`]), vectorised.
pub(crate) fn f32_to_bf16_slice(src: &[f32], dst: &mut [half::bf16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_bf16_slice: lengths differ");
    vectorized(
        #[inline(always)]
        || dst.iter_mut().zip(src).for_each(|(d, s)| *d = half::bf16::from_bits(bf16_bits(*s))),
    )
}

/// `e^x` for f32 within about 2 ulp, written so that loops over slices auto-vectorise (no
/// branches, no library calls; the platform `expf` is scalar and costs ~5 ns).
///
/// Standard range reduction: `x = n ln 2 + r` with integer `n` and `|r| <= ln 2 / 2`, then
/// `e^x = 2^n e^r` with `e^r` from its degree-7 Taylor polynomial (truncation error below
/// 6e-9 relative) and `2^n` built in the exponent bits, so `n` must stay within the normal
/// exponents: below -87 the result is 0 (the true value is subnormal or tiny), above 88.3 it
/// is infinity (true overflow is at 88.72; softmax and SiLU never need values that large),
/// and NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75; // ln 2 with 16 significant bits: n * LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 - LN2_HI
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting it rounds to an integer
    let xc = x.clamp(-87.0, 88.3);
    // t = ROUND + n: the low mantissa bits of t hold n in two's complement.
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let n_int = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits(((n_int + 127) << 23) as u32); // 2^n
    let y = p * scale;
    if x < -87.0 {
        0.0
    } else if x > 88.3 {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// `erf(x)` for f32 within about 2e-7 absolute, branch-free so that loops over slices
/// auto-vectorise (the platform `erff` is scalar).
///
/// `erf(|x|) = 1 - t e^(-x² + P(t))` with `t = 1 / (1 + |x|/2)` and `P` the degree-9
/// polynomial of W. H. Press et al.'s `erfcc` (Numerical Recipes, 6.2: relative error of
/// `erfc` below 1.2e-7 everywhere); the sign is put back with a copysign. For `|x|` below
/// 0.0625 the subtraction `1 - erfc` would cancel, so `erf` is its Taylor series there
/// (`x (2/√π)(1 - x²/3 + x⁴/10)`, error below 3e-10).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the coefficients as published
pub(crate) fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let p = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * exp_f32(-a * a + p);
    let far = (1.0 - erfc).copysign(x);
    let x2 = x * x;
    let near = x * std::f32::consts::FRAC_2_SQRT_PI * (1.0 - x2 * (1.0 / 3.0 - x2 * 0.1));
    if a < 0.0625 { near } else { far }
}

/// Sum of a slice in f32 with eight independent accumulators, so that it vectorises (a single
/// running sum must be added in order) and rounding errors grow more slowly.
#[inline(always)]
pub(crate) fn sum_f32(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Maximum of a slice (`-inf` when empty) with eight independent lanes, so that it vectorises.
/// NaN elements are skipped, as by `f32::max`.
#[inline(always)]
pub(crate) fn max_f32(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// Dot product of two slices in f32, with eight independent accumulators like [`sum_f32`].
#[inline(always)]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_f64() {
        let xs: Vec<f32> = (0..1001).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0).collect();
        let want: f64 = xs.iter().map(|&x| x as f64).sum();
        assert!((sum_f32(&xs) as f64 - want).abs() < 1e-4);
        let want: f64 = xs.iter().map(|&x| x as f64 * x as f64).sum();
        assert!((dot_f32(&xs, &xs) as f64 - want).abs() < 1e-3);
    }

    #[test]
    fn erf_is_within_3e7_of_the_f64_erf() {
        let mut worst: f64 = 0.0;
        let mut x = -9.0f32;
        while x < 9.0 {
            let (got, want) = (erf_f32(x) as f64, libm::erf(x as f64));
            worst = worst.max((got - want).abs());
            x += 0.000_731;
        }
        assert!(worst < 3e-7, "worst absolute error {worst:e}");
        assert_eq!(erf_f32(0.0), 0.0);
        assert_eq!((erf_f32(f32::INFINITY), erf_f32(f32::NEG_INFINITY)), (1.0, -1.0));
        assert!(erf_f32(f32::NAN).is_nan());
    }

    #[test]
    fn exp_is_accurate_over_the_whole_range() {
        let mut worst: f64 = 0.0;
        let mut x = -87.0f32;
        while x < 88.3 {
            let (got, want) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        // 3 ulp at most (the unit roundoff is 6e-8).
        assert!(worst < 3.0 * f32::EPSILON as f64, "worst relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }
}

#[cfg(test)]
mod bf16_tests {
    use super::*;

    /// The branch-free rounding gives `half`'s bits for random patterns of every kind (normal,
    /// subnormal, ties, infinities, NaNs with any payload) and for the edge cases.
    #[test]
    fn bf16_rounding_matches_half() {
        let mut rng = crate::random::SplitMix64::new(17);
        let edges = [
            0u32,
            0x8000_0000,
            0x7F7F_FFFF,
            0x7F80_0000,
            0xFF80_0000,
            0x7F80_0001,
            0xFFC0_0000,
            0x0000_8000,
            0x3F80_8000,
            0x3F81_8000,
            0x0001_8000,
        ];
        let randoms = (0..200_000).map(|_| rng.next_u64() as u32);
        for bits in edges.into_iter().chain(randoms) {
            let x = f32::from_bits(bits);
            assert_eq!(bf16_bits(x), half::bf16::from_f32(x).to_bits(), "bits {bits:#010x}");
        }
        let src: Vec<f32> = (0..1000).map(|_| f32::from_bits(rng.next_u64() as u32)).collect();
        let mut dst = vec![half::bf16::ZERO; src.len()];
        f32_to_bf16_slice(&src, &mut dst);
        for (s, d) in src.iter().zip(&dst) {
            assert_eq!(d.to_bits(), half::bf16::from_f32(*s).to_bits());
        }
    }
}
