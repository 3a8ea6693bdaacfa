//! Shared helpers for the CPU op tests: seeded random inputs quantised to a dtype, and an
//! llm.c-style comparison against an f64 reference with a dtype-scaled tolerance that reports
//! the first mismatches.
#![allow(dead_code)] // each test binary uses a different subset

use kiln_runtime::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every storage dtype the ops support.
pub const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// A seeded generator, so a failure reproduces.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` values uniform in `[lo, hi)`.
pub fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` normal values with mean `mean` and standard deviation `std` (Box-Muller).
pub fn normal(rng: &mut StdRng, n: usize, mean: f32, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
            let u2: f64 = rng.random();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            mean + std * z as f32
        })
        .collect()
}

/// A tensor of `data` stored as `dtype`, and its quantised values in f64 for the reference.
pub fn tensor(data: Vec<f32>, shape: &[usize], dtype: DType) -> (Tensor, Vec<f64>) {
    let t = Tensor::from_f32(data, shape, dtype, Device::Cpu).unwrap();
    let q = t.to_vec_f32().unwrap().into_iter().map(f64::from).collect();
    (t, q)
}

/// A tensor of uniform values in `[-1, 1)` stored as `dtype`, with its quantised f64 values.
pub fn rand_tensor(rng: &mut StdRng, shape: &[usize], dtype: DType) -> (Tensor, Vec<f64>) {
    tensor(uniform(rng, shape.iter().product(), -1.0, 1.0), shape, dtype)
}

/// Compares `got` (shape and values) with the f64 reference `expected`.
///
/// The ops round their inputs to the dtype (the reference sees the same rounded values),
/// compute in f32 and round the result once, so element `i` passes when
/// `|got - expected| <= 4 * (eps(dtype) * |expected| + eps(f32) * accum)`: the first term is the
/// final rounding, the second the f32 arithmetic, with `accum` the size of the intermediate
/// values (e.g. the sum of `|x_p w_p|` over a length-`K` dot product, at most `K` for inputs in
/// `[-1, 1]`). On failure, panics listing the first mismatches (index, got, expected, tolerance)
/// and how many there are.
pub fn assert_close(what: &str, got: &Tensor, shape: &[usize], expected: &[f64], accum: f64) {
    assert_eq!(got.dims(), shape, "{what}: shape");
    let dtype = got.dtype();
    let got = got.to_vec_f32().unwrap();
    assert_eq!(got.len(), expected.len(), "{what}: element count");
    let (eps, eps32) = (dtype.epsilon() as f64, DType::F32.epsilon() as f64);
    let mut bad = Vec::new();
    let mut max_err: f64 = 0.0;
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let err = (g as f64 - e).abs();
        let tol = 4.0 * (eps * e.abs() + eps32 * accum);
        max_err = max_err.max(err);
        if err.is_nan() || err > tol {
            bad.push((i, g, e, tol));
        }
    }
    if !bad.is_empty() {
        let first: Vec<String> = bad
            .iter()
            .take(6)
            .map(|(i, g, e, tol)| format!("  [{i}] got {g:.7e} expected {e:.7e} (tol {tol:.2e})"))
            .collect();
        panic!(
            "{what} ({dtype}): {} of {} elements mismatch, max abs error {max_err:.3e}; first:\n{}",
            bad.len(),
            expected.len(),
            first.join("\n")
        );
    }
}
