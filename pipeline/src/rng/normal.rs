//! torch's CPU normal sampling, reproduced operation for operation so the f32 results are equal
//! bit for bit: uniforms from MT19937 words, the 16-value Box-Muller kernel of float tensors
//! with at least 16 elements (x86 AVX2 build: Cephes-style `log` and `sincos` polynomials in f32,
//! as in torch's `avx_mathfun.h`), and the scalar double-precision path of smaller tensors.

use super::mt19937::Mt19937;

/// Uniform in [0, 1) from the low 24 bits of one word (torch's `uniform_real_distribution<float>`).
pub fn uniform_f32(word: u32) -> f32 {
    (word & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
}

/// Uniform in [0, 1) from the low 53 bits of a 64-bit draw (`uniform_real_distribution<double>`).
pub fn uniform_f64(word: u64) -> f64 {
    (word & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// One standard normal from torch's `normal_distribution<double>`: Box-Muller on two uniforms,
/// the sine half cached in `cache` for the next call (the generator owns the cache).
pub fn normal_f64(engine: &mut Mt19937, cache: &mut Option<f64>) -> f64 {
    if let Some(value) = cache.take() {
        return value;
    }
    let u1 = uniform_f64(engine.next_u64());
    let u2 = uniform_f64(engine.next_u64());
    let radius = (-2.0 * (-u2).ln_1p()).sqrt();
    let theta = 2.0 * std::f64::consts::PI * u1;
    *cache = Some(radius * theta.sin());
    radius * theta.cos()
}

/// Which of torch's per-CPU builds of the 16-value Box-Muller kernel to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BoxMullerKernel {
    /// torch on x86-64 with AVX2 or AVX-512 (both run the AVX2 kernel): Cephes polynomials.
    #[default]
    X86Avx2,
    /// torch's portable build (`ATEN_CPU_CAPABILITY=default`, x86 without AVX2): libm's `logf`,
    /// `cosf`, `sinf` (Rust's f32 functions call the same libm on Linux/glibc).
    Portable,
}

impl BoxMullerKernel {
    /// Box-Muller on 16 uniforms in place: lanes 0..8 hold u1 (used as 1 - u1), lanes 8..16 hold
    /// u2; the cosine halves go to 0..8, the sine halves to 8..16.
    pub fn apply(self, data: &mut [f32]) {
        match self {
            BoxMullerKernel::X86Avx2 => box_muller_16_avx2(data),
            BoxMullerKernel::Portable => box_muller_16_portable(data),
        }
    }
}

/// torch's scalar `NormalFill16`: f32 log/sqrt, the angle computed in f64 then rounded to f32.
fn box_muller_16_portable(data: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = (2.0 * std::f64::consts::PI * u2 as f64) as f32;
        data[j] = (radius * theta.cos()).mul_add(1.0, 0.0);
        data[j + 8] = (radius * theta.sin()).mul_add(1.0, 0.0);
    }
}

/// torch's AVX2 `NormalFill16` (`log256_ps`, `sincos256_ps`), one lane at a time.
fn box_muller_16_avx2(data: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0 * log_cephes(u1)).sqrt();
        let (sin, cos) = sincos_cephes(two_pi * u2);
        // torch finishes with fma(n, std, mean); for N(0, 1) that only turns -0.0 into +0.0.
        data[j] = fma(radius * cos, 1.0, 0.0);
        data[j + 8] = fma(radius * sin, 1.0, 0.0);
    }
}

// Cephes single-precision coefficients, written as `avx_mathfun.h` writes them: double literals
// rounded to f32 (decimal -> f64 -> f32, as C converts them in its float constant tables).
const SQRT_HALF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32;
const LOG_P: [f32; 9] = [
    7.0376836292e-2_f64 as f32,
    -1.1514610310e-1_f64 as f32,
    1.1676998740e-1_f64 as f32,
    -1.2420140846e-1_f64 as f32,
    1.4249322787e-1_f64 as f32,
    -1.6668057665e-1_f64 as f32,
    2.0000714765e-1_f64 as f32,
    -2.4999993993e-1_f64 as f32,
    3.3333331174e-1_f64 as f32,
];
const LOG_Q1: f32 = -2.12194440e-4_f64 as f32;
const LOG_Q2: f32 = 0.693359375_f64 as f32;
const FOUR_OVER_PI: f32 = 1.27323954473516_f64 as f32;
#[allow(clippy::excessive_precision)] // the literals as the reference writes them
const MINUS_DP: [f32; 3] =
    [-0.78515625_f64 as f32, -2.4187564849853515625e-4_f64 as f32, -3.77489497744594108e-8_f64 as f32];
const SIN_P: [f32; 3] =
    [-1.9515295891e-4_f64 as f32, 8.3321608736e-3_f64 as f32, -1.6666654611e-1_f64 as f32];
const COS_P: [f32; 3] =
    [2.443315711809948e-5_f64 as f32, -1.388731625493765e-3_f64 as f32, 4.166664568298827e-2_f64 as f32];

/// Natural log of a positive normal f32 by mantissa/exponent split and a degree-9 polynomial, in
/// the operation order (and rounding) of `log256_ps`. Inputs here are in (0, 1].
fn log_cephes(x: f32) -> f32 {
    let x = x.max(f32::MIN_POSITIVE);
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32 - 0x7f) as f32 + 1.0;
    let mut m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    if m < SQRT_HALF {
        e -= 1.0;
        m = m - 1.0 + m;
    } else {
        m -= 1.0;
    }
    let z = m * m;
    let mut y = LOG_P[0];
    for &p in &LOG_P[1..] {
        y = fma(y, m, p);
    }
    y *= m;
    y = fma(y, z, e * LOG_Q1);
    y = fma(-z, 0.5, y);
    fma(e, LOG_Q2, m + y)
}

/// Sine and cosine of a non-negative f32 by octant reduction (three-part pi/4) and the two Cephes
/// polynomials, in the operation order of `sincos256_ps`. Returns (sin, cos).
fn sincos_cephes(x: f32) -> (f32, f32) {
    let sign_in = x.to_bits() & 0x8000_0000;
    let x = f32::from_bits(x.to_bits() & 0x7fff_ffff);
    let octant = (((x * FOUR_OVER_PI) as i32).wrapping_add(1)) & !1;
    let y = octant as f32;
    let swap_sin = ((octant & 4) as u32) << 29;
    let use_cos_poly = octant & 2 == 0;
    let mut r = fma(y, MINUS_DP[0], x);
    r = fma(y, MINUS_DP[1], r);
    r = fma(y, MINUS_DP[2], r);
    let sign_cos = ((!(octant.wrapping_sub(2)) & 4) as u32) << 29;
    let sign_sin = sign_in ^ swap_sin;

    let z = r * r;
    let mut c = fma(COS_P[0], z, COS_P[1]);
    c = fma(c, z, COS_P[2]);
    c *= z;
    c = fma(c, z, -(z * 0.5));
    c += 1.0;
    let mut s = fma(SIN_P[0], z, SIN_P[1]);
    s = fma(s, z, SIN_P[2]);
    s *= z;
    s = fma(s, r, r);

    let (sin, cos) = if use_cos_poly { (s, c) } else { (c, s) };
    (f32::from_bits(sin.to_bits() ^ sign_sin), f32::from_bits(cos.to_bits() ^ sign_cos))
}

/// The multiply-add of torch's AVX2 build (its compiler contracts `a * b + c` into one FMA).
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}
