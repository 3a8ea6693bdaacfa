//! Every op on the CUDA backend against the CPU backend, on fresh random inputs (never zeros),
//! in bf16 and f16, with odd sizes (token counts that are not a multiple of any tile; channel
//! counts of 320/640/1280 and small ones).
//!
//! Both backends get the same quantised inputs (the GPU's are uploaded from the CPU tensors).
//! Outputs are poisoned before each op (the device fills every fresh output with NaN), so an
//! element a kernel leaves unwritten fails the comparison. Element `i` passes when
//! `|gpu - cpu| <= 2u |cpu| + 4u rms(cpu)` with `u` the dtype's unit roundoff (bf16: 7.8e-3
//! relative, f16: 9.8e-4): both backends round their result once, and the GPU kernels may round
//! intermediates (attention's probabilities) to the storage type; the `rms` term covers
//! cancellation in long sums. Layout ops and casts must match exactly.
//!
//! Without a GPU (or a driver), each test prints why and returns: `cargo test --features cuda`
//! passes on any machine, and checks the kernels where a GPU is present.
#![cfg(feature = "cuda")]

use std::sync::Arc;

use kiln_runtime::cuda::{self, CudaDevice};
use kiln_runtime::ops::Conv2dParams;
use kiln_runtime::{DType, Device, Error, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HALVES: [DType; 2] = [DType::BF16, DType::F16];
const GPU: Device = Device::Cuda(0);

/// Device 0 with output poisoning on, or `None` (after saying why) where there is none.
fn gpu(test: &str) -> Option<Arc<CudaDevice>> {
    match cuda::device(0) {
        Ok(dev) => {
            dev.set_poison(true);
            Some(dev)
        }
        Err(e) => {
            kiln_runtime::cuda::skip_gpu_test(test, &format!("no usable CUDA device: {e}"));
            None
        }
    }
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A host tensor of uniform values in `[lo, hi)` stored as `dtype`.
fn rand_t(rng: &mut StdRng, shape: &[usize], dtype: DType, lo: f32, hi: f32) -> Tensor {
    let data = (0..shape.iter().product()).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_f32(data, shape, dtype, Device::Cpu).unwrap()
}

/// A host tensor of uniform values in `[-1, 1)`.
fn rand_u(rng: &mut StdRng, shape: &[usize], dtype: DType) -> Tensor {
    rand_t(rng, shape, dtype, -1.0, 1.0)
}

fn up(t: &Tensor) -> Tensor {
    t.to_device(GPU).unwrap()
}

/// Runs `op` on the host `inputs` and on their uploads, and compares the results.
fn compare(what: &str, inputs: &[&Tensor], exact: bool, op: impl Fn(&[&Tensor]) -> Result<Tensor>) {
    let want = op(inputs).unwrap_or_else(|e| panic!("{what}: CPU op failed: {e}"));
    let uploaded: Vec<Tensor> = inputs.iter().map(|t| up(t)).collect();
    let refs: Vec<&Tensor> = uploaded.iter().collect();
    let got = op(&refs).unwrap_or_else(|e| panic!("{what}: CUDA op failed: {e}"));
    assert_eq!(got.device(), GPU, "{what}: result device");
    assert_eq!(got.dtype(), want.dtype(), "{what}: result dtype");
    assert_eq!(got.dims(), want.dims(), "{what}: result shape");
    check(what, &got.to_vec_f32().unwrap(), &want.to_vec_f32().unwrap(), want.dtype(), exact);
}

/// The element-wise comparison described in the module comment; panics listing the first
/// mismatches.
fn check(what: &str, got: &[f32], want: &[f32], dtype: DType, exact: bool) {
    assert_eq!(got.len(), want.len(), "{what}: element count");
    let u = f64::from(dtype.epsilon());
    let rms = (want.iter().map(|&w| f64::from(w).powi(2)).sum::<f64>() / want.len().max(1) as f64).sqrt();
    let mut bad = Vec::new();
    let mut max_err: f64 = 0.0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - f64::from(w)).abs();
        let tol = if exact { 0.0 } else { 2.0 * u * f64::from(w).abs() + 4.0 * u * rms };
        if !err.is_nan() {
            max_err = max_err.max(err);
        }
        if err.is_nan() || err > tol {
            bad.push(format!("  [{i}] gpu {g:.6e} cpu {w:.6e} (tol {tol:.2e})"));
        }
    }
    if !bad.is_empty() {
        panic!(
            "{what} ({dtype}): {} of {} elements mismatch (max finite error {max_err:.3e}, rms {rms:.3e}); first:\n{}",
            bad.len(),
            got.len(),
            bad.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
fn opening_a_device_never_panics() {
    // Runs everywhere: on this crate's CI (no GPU, no driver) this is the typed error.
    match Device::cuda(0) {
        Ok(d) => assert_eq!(d, Device::Cuda(0)),
        Err(e) => {
            assert!(matches!(e, Error::CudaUnavailable { ordinal: 0, .. }), "{e}");
            eprintln!("no CUDA device: {e}");
            let t = Tensor::from_f32(vec![1.0, 2.0], &[2], DType::BF16, Device::Cpu).unwrap();
            assert!(matches!(t.to_device(GPU), Err(Error::CudaUnavailable { .. })));
            assert!(matches!(Tensor::full(1.0, &[3], DType::F16, GPU), Err(Error::CudaUnavailable { .. })));
        }
    }
    // An ordinal no machine has is the same typed error, never a panic.
    assert!(matches!(Device::cuda(4096), Err(Error::CudaUnavailable { ordinal: 4096, .. })));
}

#[test]
fn uploads_and_downloads_are_exact_in_every_dtype() {
    let Some(_dev) = gpu("uploads_and_downloads_are_exact_in_every_dtype") else { return };
    let mut r = rng(1);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for shape in [&[0][..], &[1], &[3, 77, 5], &[2, 9, 11, 320]] {
            let t = rand_u(&mut r, shape, dtype);
            let g = up(&t);
            assert_eq!((g.device(), g.dtype(), g.dims()), (GPU, dtype, shape));
            assert_eq!(g.to_vec_f32().unwrap(), t.to_vec_f32().unwrap(), "{dtype} {shape:?} via to_vec_f32");
            let back = g.to_device(Device::Cpu).unwrap();
            assert_eq!(back.device(), Device::Cpu);
            assert_eq!(
                back.to_vec_f32().unwrap(),
                t.to_vec_f32().unwrap(),
                "{dtype} {shape:?} via to_device"
            );
            // Already there: shares the buffer.
            assert_eq!(g.to_device(GPU).unwrap().to_vec_f32().unwrap(), t.to_vec_f32().unwrap());
        }
    }
}

#[test]
fn fresh_allocations_are_poisoned_and_freed_buffers_reused() {
    let Some(dev) = gpu("fresh_allocations_are_poisoned_and_freed_buffers_reused") else { return };
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let t = dev.alloc_tensor(&[1001, 3], dtype).unwrap();
        assert!(t.to_vec_f32().unwrap().iter().all(|v| v.is_nan()), "{dtype}: fresh output not poisoned");
    }
    // A buffer of a size no other test uses (bucket 2 MiB * 37) is reused after a drop.
    let shape = [37 << 19]; // 37 * 2^19 bf16 elements = 37 MiB
    let a = dev.alloc_tensor(&shape, DType::BF16).unwrap();
    drop(a);
    let before = dev.memory_stats();
    assert!(before.cached >= 37 << 20, "{before:?}");
    let b = dev.alloc_tensor(&shape, DType::BF16).unwrap();
    let after = dev.memory_stats();
    assert!(after.reuses > before.reuses, "{before:?} -> {after:?}");
    assert!(b.to_vec_f32().unwrap().iter().take(4096).all(|v| v.is_nan()), "reused output not poisoned");
    assert!(after.peak_in_use >= after.in_use);
}

/// Issue 11 (found on the software GPU): poisoning an allocation served from the cache called
/// cuMemsetD8Async without making the context current, which fails on a thread that never
/// used the device (a driver allocation binds the context on the way; a cache hit does not).
#[test]
fn issue11_poisoned_allocation_on_a_thread_new_to_the_device() {
    let Some(dev) = gpu("issue11_poisoned_allocation_on_a_thread_new_to_the_device") else { return };
    // A bucket no other test uses (2 MiB * 41), cached by the drop, then reused on a new thread.
    let shape = [41 << 19];
    drop(dev.alloc_tensor(&shape, DType::BF16).unwrap());
    let t = std::thread::spawn(move || dev.alloc_tensor(&shape, DType::BF16)).join().unwrap();
    let t = t.unwrap_or_else(|e| panic!("allocation on a new thread: {e}"));
    assert!(t.to_vec_f32().unwrap().iter().take(4096).all(|v| v.is_nan()), "reused output not poisoned");
}

#[test]
fn f32_ops_without_a_kernel_are_typed_errors() {
    let Some(_dev) = gpu("f32_ops_without_a_kernel_are_typed_errors") else { return };
    let mut r = rng(2);
    let x = up(&rand_u(&mut r, &[5, 8], DType::F32));
    let w = up(&rand_u(&mut r, &[4, 8], DType::F32));
    let err = x.linear(&w, None).unwrap_err();
    assert!(matches!(err, Error::Unsupported { op: "linear", dtype: DType::F32, device: GPU, .. }), "{err}");
}

#[test]
fn linear_matches_cpu() {
    let Some(_dev) = gpu("linear_matches_cpu") else { return };
    let mut r = rng(3);
    // (M, K, N, bias): cross-attention K/V on 77 tokens, a token count not a multiple of 64,
    // SDXL projections, and tiny odd sizes.
    let cases = [
        (77, 768, 320, true),
        (2 * 77, 2048, 640, false),
        (1031, 640, 640, true),
        (333, 1280, 1280, true),
        (4096 + 5, 320, 2560, true),
        (5, 7, 3, false),
        (1, 13, 1, true),
    ];
    for dtype in HALVES {
        for &(m, k, n, bias) in &cases {
            let x = rand_u(&mut r, &[m, k], dtype);
            let w = rand_t(&mut r, &[n, k], dtype, -0.1, 0.1);
            let b = rand_u(&mut r, &[n], dtype);
            let what = format!("linear x [{m}, {k}] w [{n}, {k}] bias {bias}");
            if bias {
                compare(&what, &[&x, &w, &b], false, |t| t[0].linear(t[1], Some(t[2])));
            } else {
                compare(&what, &[&x, &w], false, |t| t[0].linear(t[1], None));
            }
        }
        // A rank-3 input keeps its leading dims.
        let x = rand_u(&mut r, &[2, 33, 64], dtype);
        let w = rand_u(&mut r, &[96, 64], dtype);
        compare("linear [2, 33, 64]", &[&x, &w], false, |t| t[0].linear(t[1], None));
    }
}

#[test]
fn matmul_matches_cpu() {
    let Some(_dev) = gpu("matmul_matches_cpu") else { return };
    let mut r = rng(4);
    for dtype in HALVES {
        for (a, b) in [
            (vec![64, 80], vec![80, 96]),
            (vec![33, 65], vec![65, 17]),
            (vec![3, 33, 65], vec![3, 65, 17]),
            (vec![20, 77, 64], vec![20, 64, 77]),
            (vec![1, 1, 1], vec![1, 1, 1]),
        ] {
            let x = rand_u(&mut r, &a, dtype);
            let y = rand_u(&mut r, &b, dtype);
            compare(&format!("matmul {a:?} x {b:?}"), &[&x, &y], false, |t| t[0].matmul(t[1]));
        }
    }
}

#[test]
fn attention_matches_cpu() {
    let Some(_dev) = gpu("attention_matches_cpu") else { return };
    let mut r = rng(5);
    // (B, Lq, Lk, H, D): self-attention with token counts off every tile, cross-attention on
    // 77 keys, every head dim the models use.
    let cases = [
        (1, 1000, 1000, 2, 64),
        (2, 257, 77, 3, 64),
        (1, 333, 333, 2, 40),
        (2, 130, 77, 2, 80),
        (1, 200, 200, 1, 160),
        (1, 129, 129, 2, 128),
        (1, 1, 1, 1, 64),
    ];
    for dtype in HALVES {
        for &(b, lq, lk, h, d) in &cases {
            let q = rand_t(&mut r, &[b, lq, h, d], dtype, -2.0, 2.0);
            let k = rand_t(&mut r, &[b, lk, h, d], dtype, -2.0, 2.0);
            let v = rand_u(&mut r, &[b, lk, h, d], dtype);
            let scale = 1.0 / (d as f32).sqrt();
            let what = format!("attention B {b} Lq {lq} Lk {lk} H {h} D {d}");
            compare(&what, &[&q, &k, &v], false, |t| Tensor::attention(t[0], t[1], t[2], scale));
        }
    }
}

/// Random q, k, v for attention of the given sizes: q and k in [-2, 2), v in [-1, 1).
fn qkv(r: &mut StdRng, (b, lq, lk, h, d): (usize, usize, usize, usize, usize), dtype: DType) -> [Tensor; 3] {
    [
        rand_t(r, &[b, lq, h, d], dtype, -2.0, 2.0),
        rand_t(r, &[b, lk, h, d], dtype, -2.0, 2.0),
        rand_u(r, &[b, lk, h, d], dtype),
    ]
}

#[test]
fn causal_attention_matches_cpu() {
    let Some(_dev) = gpu("causal_attention_matches_cpu") else { return };
    let mut r = rng(12);
    // (B, L, H, D): CLIP's 77 tokens (and 2x77, several prompts' chunks) at its head dim 64, a
    // length off every tile at each fused head dim, and the unfused path's head dims (the tiny
    // models' 16, an odd 24).
    let cases = [
        (2, 77, 77, 12, 64),
        (1, 154, 154, 20, 64),
        (1, 333, 333, 2, 40),
        (1, 130, 130, 2, 80),
        (1, 200, 200, 1, 160),
        (1, 129, 129, 2, 128),
        (1, 1, 1, 1, 64),
        (2, 77, 77, 2, 16),
        (1, 45, 45, 3, 24),
    ];
    for dtype in HALVES {
        for &case in &cases {
            let [q, k, v] = qkv(&mut r, case, dtype);
            let d = case.4;
            let scale = 1.0 / (d as f32).sqrt();
            let what = format!("causal_attention (B, Lq, Lk, H, D) = {case:?}");
            compare(&what, &[&q, &k, &v], false, |t| Tensor::causal_attention(t[0], t[1], t[2], scale));
        }
    }
}

#[test]
fn unfused_attention_matches_cpu() {
    let Some(_dev) = gpu("unfused_attention_matches_cpu") else { return };
    let mut r = rng(13);
    // (B, Lq, Lk, H, D) with head dims that have no fused kernel: the VAE's mid-block (one head
    // of 512; 128 is fused, so 512 and 256 here), the tiny models' 8 and 16, odd ones, and a
    // cross-attention shape.
    let cases = [
        (1, 1024 + 7, 1024 + 7, 1, 512),
        (2, 300, 300, 1, 256),
        (2, 257, 77, 3, 16),
        (1, 65, 65, 2, 8),
        (1, 33, 19, 2, 3),
        (1, 1, 1, 1, 512),
    ];
    for dtype in HALVES {
        for &case in &cases {
            let [q, k, v] = qkv(&mut r, case, dtype);
            let scale = 1.0 / (case.4 as f32).sqrt();
            let what = format!("unfused attention (B, Lq, Lk, H, D) = {case:?}");
            compare(&what, &[&q, &k, &v], false, |t| Tensor::attention(t[0], t[1], t[2], scale));
        }
    }
    // Enough tokens that the scores of one batch exceed the 256 MiB budget, so the query rows
    // are split into chunks (4 of 2796 rows, then 816): plain and causal.
    let case = (1, 12_000, 12_000, 1, 16);
    let [q, k, v] = qkv(&mut r, case, DType::BF16);
    compare("unfused attention, chunked", &[&q, &k, &v], false, |t| {
        Tensor::attention(t[0], t[1], t[2], 0.25)
    });
    compare("unfused causal attention, chunked", &[&q, &k, &v], false, |t| {
        Tensor::causal_attention(t[0], t[1], t[2], 0.25)
    });
}

/// Issue 11 (found on the software GPU, a precision bug a real GPU shares): the unfused path
/// stored the scores `scale * Q K^T` in the tensor's half type before the softmax, so each
/// score carried a rounding error of up to `u |s| / 2`, which the softmax turns into a relative
/// error of the same size in the probabilities, however small the scores' spread. Here every
/// head's channel 0 is a large constant in q and k, so each score is about 140 plus a spread of
/// a few units (the softmax is shift-invariant: exact attention does not care): rounded to bf16
/// (ulp 1 at 140) or f16 (ulp 1/8), the probabilities were off by up to 50% or 6%, far above
/// the tolerance; with the scores kept in f32 the path matches the CPU backend.
#[test]
fn issue11_unfused_attention_keeps_f32_scores() {
    let Some(_dev) = gpu("issue11_unfused_attention_keeps_f32_scores") else { return };
    let mut r = rng(14);
    // (B, Lq, Lk, H, D) at head dims without a fused kernel; channel 0's value v makes the
    // scores' common offset v^2 / sqrt(D): 144 at D 16, 149 at D 24, 139 at D 512.
    let cases = [((1, 67, 67, 2, 16), 24.0), ((1, 45, 45, 3, 24), 27.0), ((1, 40, 40, 1, 512), 56.0)];
    for dtype in HALVES {
        for &(case, big) in &cases {
            let (b, lq, lk, h, d) = case;
            let qk = |r: &mut StdRng, len: usize| {
                let t = rand_t(r, &[b, len, h, d], dtype, -3.0, 3.0);
                let mut x = t.to_vec_f32().unwrap();
                x.iter_mut().step_by(d).for_each(|c0| *c0 = big); // channel 0 of every head
                Tensor::from_f32(x, &[b, len, h, d], dtype, Device::Cpu).unwrap()
            };
            let (q, k) = (qk(&mut r, lq), qk(&mut r, lk));
            let v = rand_u(&mut r, &[b, lk, h, d], dtype);
            let scale = 1.0 / (d as f32).sqrt();
            let what = format!("unfused attention, large scores, (B, Lq, Lk, H, D) = {case:?}");
            compare(&what, &[&q, &k, &v], false, |t| Tensor::attention(t[0], t[1], t[2], scale));
            let what = format!("unfused causal attention, large scores, (B, Lq, Lk, H, D) = {case:?}");
            compare(&what, &[&q, &k, &v], false, |t| Tensor::causal_attention(t[0], t[1], t[2], scale));
        }
    }
}

#[test]
fn conv2d_matches_cpu() {
    let Some(_dev) = gpu("conv2d_matches_cpu") else { return };
    let mut r = rng(6);
    // ([N, H, W], Cin, Cout, k, stride, padding, bias)
    let cases = [
        ([2, 9, 11], 320, 320, 3, 1, 1, true),
        ([1, 7, 5], 640, 640, 3, 1, 1, true),
        ([1, 4, 6], 1280, 1280, 3, 1, 1, false),
        ([2, 9, 11], 320, 320, 3, 2, 1, true), // downsample
        ([1, 8, 7], 640, 320, 1, 1, 0, true),  // 1x1 shortcut
        ([2, 13, 9], 4, 320, 3, 1, 1, true),   // conv_in on latents
        ([1, 10, 10], 128, 3, 3, 1, 1, true),  // VAE conv_out
        ([1, 5, 5], 9, 5, 3, 2, 1, false),     // small odd everything
    ];
    for dtype in HALVES {
        for &([n, h, w], cin, cout, k, stride, padding, bias) in &cases {
            let x = rand_u(&mut r, &[n, h, w, cin], dtype);
            let fan_in = (k * k * cin) as f32;
            let wt = rand_t(&mut r, &[cout, k, k, cin], dtype, -1.0 / fan_in.sqrt(), 1.0 / fan_in.sqrt());
            let b = rand_u(&mut r, &[cout], dtype);
            let p = Conv2dParams { stride, padding };
            let what = format!("conv2d [{n}, {h}, {w}, {cin}] -> {cout}, {k}x{k} {p:?} bias {bias}");
            if bias {
                compare(&what, &[&x, &wt, &b], false, |t| t[0].conv2d(t[1], Some(t[2]), p));
            } else {
                compare(&what, &[&x, &wt], false, |t| t[0].conv2d(t[1], None, p));
            }
        }
    }
}

#[test]
fn norms_and_softmax_match_cpu() {
    let Some(_dev) = gpu("norms_and_softmax_match_cpu") else { return };
    let mut r = rng(7);
    for dtype in HALVES {
        // Inputs off zero mean and unit scale, so the statistics matter.
        for (shape, groups) in [
            (vec![2, 7, 9, 320], 32),
            (vec![1, 5, 3, 640], 32),
            (vec![1, 4, 4, 1280], 32),
            (vec![2, 3, 3, 8], 4),
        ] {
            let c = *shape.last().unwrap();
            let x = rand_t(&mut r, &shape, dtype, -1.5, 2.5);
            let g = rand_t(&mut r, &[c], dtype, 0.5, 1.5);
            let b = rand_u(&mut r, &[c], dtype);
            for silu in [false, true] {
                let what = format!("group_norm {shape:?} groups {groups} silu {silu}");
                compare(&what, &[&x, &g, &b], false, |t| t[0].group_norm(groups, t[1], t[2], 1e-5, silu));
            }
        }
        for shape in [vec![2, 77, 768], vec![3, 5, 320], vec![1, 9, 1280], vec![4, 7]] {
            let c = *shape.last().unwrap();
            let x = rand_t(&mut r, &shape, dtype, -1.0, 3.0);
            let g = rand_t(&mut r, &[c], dtype, 0.5, 1.5);
            let b = rand_u(&mut r, &[c], dtype);
            compare(&format!("layer_norm {shape:?}"), &[&x, &g, &b], false, |t| {
                t[0].layer_norm(t[1], t[2], 1e-5)
            });
        }
        // Softmax: odd rows (scalar path), rows of a multiple of 8 (vector path), long rows
        // (the VAE's attention scores), one-element rows; values far from 0 so the maximum
        // subtraction matters.
        for (shape, lo, hi) in [
            (vec![7, 77], -4.0, 4.0),
            (vec![3, 5, 1000], -6.0, 6.0),
            (vec![2, 4097], 10.0, 18.0),
            (vec![3, 16384], -30.0, -20.0),
            (vec![5, 1], -1.0, 1.0),
            (vec![9, 40], -60.0, 60.0),
        ] {
            let x = rand_t(&mut r, &shape, dtype, lo, hi);
            compare(&format!("softmax {shape:?} in [{lo}, {hi})"), &[&x], false, |t| t[0].softmax());
        }
    }
    // f32 has no softmax kernel: a typed error, not a panic.
    let x = up(&rand_u(&mut r, &[3, 8], DType::F32));
    let err = x.softmax().unwrap_err();
    assert!(matches!(err, Error::Unsupported { op: "softmax", .. }), "{err}");
}

#[test]
fn activations_and_broadcasts_match_cpu() {
    let Some(_dev) = gpu("activations_and_broadcasts_match_cpu") else { return };
    let mut r = rng(8);
    for dtype in HALVES {
        let x = rand_t(&mut r, &[3, 7, 589], dtype, -4.0, 4.0); // 12369 elements, odd
        compare("gelu", &[&x], false, |t| t[0].gelu());
        compare("silu", &[&x], false, |t| t[0].silu());
        compare("affine", &[&x], false, |t| t[0].affine(0.18215, -0.5));
        let h = rand_t(&mut r, &[3, 77, 2 * 640], dtype, -3.0, 3.0);
        compare("geglu [3, 77, 1280]", &[&h], false, |t| t[0].geglu());
        let a = rand_u(&mut r, &[2, 5, 7, 320], dtype);
        for b_shape in [vec![320], vec![2, 1, 1, 320], vec![2, 5, 7, 320], vec![5, 1, 1]] {
            let b = rand_u(&mut r, &b_shape, dtype);
            compare(&format!("add [2, 5, 7, 320] + {b_shape:?}"), &[&a, &b], false, |t| t[0].add(t[1]));
            compare(&format!("mul [2, 5, 7, 320] * {b_shape:?}"), &[&a, &b], false, |t| t[0].mul(t[1]));
        }
    }
}

#[test]
fn casts_match_cpu_exactly() {
    let Some(_dev) = gpu("casts_match_cpu_exactly") else { return };
    let mut r = rng(9);
    let dtypes = [DType::F32, DType::F16, DType::BF16];
    for from in dtypes {
        for to in dtypes {
            let x = rand_t(&mut r, &[3, 333], from, -70.0, 70.0);
            compare(&format!("to_dtype {from} -> {to}"), &[&x], true, |t| t[0].to_dtype(to));
        }
    }
}

#[test]
fn layout_ops_match_cpu_exactly() {
    let Some(_dev) = gpu("layout_ops_match_cpu_exactly") else { return };
    let mut r = rng(10);
    for dtype in [DType::BF16, DType::F16, DType::F32] {
        let x = rand_u(&mut r, &[2, 5, 7, 320], dtype);
        let y = rand_u(&mut r, &[2, 5, 7, 640], dtype);
        let z = rand_u(&mut r, &[2, 3, 7, 320], dtype);
        compare("narrow dim 3", &[&x], true, |t| t[0].narrow(3, 100, 111));
        compare("narrow dim 1", &[&x], true, |t| t[0].narrow(1, 1, 3));
        compare("narrow dim 0", &[&x], true, |t| t[0].narrow(0, 1, 1));
        compare("narrow empty", &[&x], true, |t| t[0].narrow(2, 7, 0));
        compare("concat channels", &[&x, &y, &x], true, |t| Tensor::concat(&[t[0], t[1], t[2]], 3));
        compare("concat rows", &[&x, &z], true, |t| Tensor::concat(&[t[0], t[1]], 1));
        compare("concat batch", &[&x, &x], true, |t| Tensor::concat(&[t[0], t[1]], 0));
        compare("chunk halves", &[&y], true, |t| Ok(t[0].chunk(2, 3)?.swap_remove(1)));
        // Permutations: NHWC <-> NCHW (tiled), heads to the front (gather, contiguous rows),
        // a full reversal, the identity, size-1 and odd dims, rank 1 and rank 6.
        let w = rand_u(&mut r, &[3, 1, 37, 9, 41], dtype);
        let cases: [(&Tensor, &[usize]); 9] = [
            (&x, &[0, 3, 1, 2]),
            (&y, &[3, 0, 1, 2]),
            (&x, &[0, 2, 1, 3]),
            (&x, &[3, 2, 1, 0]),
            (&x, &[0, 1, 2, 3]),
            (&w, &[4, 2, 0, 3, 1]),
            (&w, &[1, 0, 2, 4, 3]),
            (&z, &[2, 3, 0, 1]),
            (&w, &[3, 4, 1, 2, 0]),
        ];
        for (t, perm) in cases {
            compare(&format!("permute {:?} by {perm:?}", t.dims()), &[t], true, |t| t[0].permute(perm));
        }
        let v = rand_u(&mut r, &[333], dtype);
        compare("permute rank 1", &[&v], true, |t| t[0].permute(&[0]));
        let six = rand_u(&mut r, &[2, 3, 4, 5, 3, 2], dtype);
        compare("permute rank 6", &[&six], true, |t| t[0].permute(&[5, 3, 1, 0, 4, 2]));
        // NCHW -> NHWC of a VAE-sized activation with few channels (gather) and many (tiled).
        for c in [3, 128] {
            let a = rand_u(&mut r, &[1, c, 48, 40], dtype);
            compare(&format!("permute NCHW -> NHWC, {c} channels"), &[&a], true, |t| {
                t[0].permute(&[0, 2, 3, 1])
            });
        }
    }
    for dtype in HALVES {
        let x = rand_u(&mut r, &[2, 5, 7, 320], dtype);
        compare("upsample_nearest2x", &[&x], true, |t| t[0].upsample_nearest2x());
    }
}

#[test]
fn timestep_embeddings_match_cpu_exactly() {
    let Some(_dev) = gpu("timestep_embeddings_match_cpu_exactly") else { return };
    let ts = [999.0, 500.5, 1.0];
    for dtype in HALVES {
        let p = kiln_runtime::ops::TimestepEmbeddingParams::default();
        let want = Tensor::timestep_embedding(&ts, 320, p, dtype, Device::Cpu).unwrap();
        let got = Tensor::timestep_embedding(&ts, 320, p, dtype, GPU).unwrap();
        assert_eq!(got.device(), GPU);
        check("timestep_embedding", &got.to_vec_f32().unwrap(), &want.to_vec_f32().unwrap(), dtype, true);
    }
}

#[test]
fn mixed_devices_are_typed_errors() {
    let Some(_dev) = gpu("mixed_devices_are_typed_errors") else { return };
    let mut r = rng(11);
    let x = rand_u(&mut r, &[4, 8], DType::BF16);
    let w = rand_u(&mut r, &[3, 8], DType::BF16);
    let err = up(&x).linear(&w, None).unwrap_err();
    assert!(matches!(err, Error::DeviceMismatch { op: "linear", .. }), "{err}");
}
