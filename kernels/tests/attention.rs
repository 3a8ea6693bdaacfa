//! The flash-attention kernels on the GPU against a plain f64 reference computed here, on fresh
//! random inputs, for both dtypes and every head dim, with query lengths that are not a
//! multiple of the tile and key lengths of 77 (CLIP cross-attention) and several partial tiles,
//! and with the causal mask on self-attention of 77, 154 and tile-crossing lengths.
//! The output is poisoned with NaN before each run so unwritten elements fail.
//!
//! Without a CUDA driver, a GPU or NVRTC the test prints why and passes. The attention module
//! is compiled with the crate's [`Compiler`] (NVRTC and headers found as it documents) for the
//! device's own architecture.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cudarc::driver::{CudaContext, CudaModule};
use cudarc::nvrtc::Ptx;
use kiln_kernels::attention::{
    AttentionDims, AttentionError, AttentionKernel, KernelElem, launch_flash_attention,
};
use kiln_kernels::{Arch, Compiler, Family};

/// (batch, heads, len_q, len_k): the last tile of queries and keys is partial in each.
const CASES: [(usize, usize, usize, usize); 4] =
    [(2, 3, 200, 77), (1, 2, 130, 300), (1, 1, 1, 1), (1, 2, 257, 64)];

/// (batch, heads, len) of the causal cases: CLIP's 77 and 2x77 tokens, a length crossing several
/// query blocks and key tiles with a partial last one, and one token.
const CAUSAL_CASES: [(usize, usize, usize); 4] = [(2, 3, 77), (1, 2, 154), (1, 2, 333), (1, 1, 1)];

/// A test element type: conversions and the NaN bit pattern.
trait Elem: KernelElem + Copy + std::fmt::Debug {
    fn from_f32(x: f32) -> Self;
    fn to_f64(self) -> f64;
    fn nan() -> Self;
    /// (absolute, relative) tolerance.
    const TOL: (f64, f64);
}
impl Elem for half::bf16 {
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn nan() -> Self {
        half::bf16::from_bits(0xffff)
    }
    const TOL: (f64, f64) = (1e-2, 1e-2);
}
impl Elem for half::f16 {
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn nan() -> Self {
        half::f16::from_bits(0xffff)
    }
    const TOL: (f64, f64) = (2e-3, 2e-3);
}

/// xorshift64*: uniform values in [-1.5, 1.5).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40; // 24 bits
        (bits as f32 / (1u64 << 24) as f32) * 3.0 - 1.5
    }
}

/// The driver context and the attention module, or why the test cannot run here.
fn setup() -> Result<(Arc<CudaContext>, Arc<CudaModule>), String> {
    // SAFETY: only probes whether the driver library can be loaded.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver library (libcuda) on this machine".into());
    }
    let compiler = Compiler::new().map_err(|e| e.to_string())?;
    let ctx = CudaContext::new(0).map_err(|e| format!("no CUDA device: {e}"))?;
    let (major, minor) = ctx.compute_capability().map_err(|e| e.to_string())?;
    if major < 8 {
        return Err(format!("device is sm_{major}{minor}; the attention kernels need sm_80 or newer"));
    }
    let arch = compiler.target_for(Arch { major: major as u32, minor: minor as u32 });
    let compiled = compiler.compile(Family::Attention, arch).map_err(|e| format!("attention.cu: {e}"))?;
    let module = ctx
        .load_module(Ptx::from_src(compiled.ptx))
        .map_err(|e| format!("loading the attention PTX: {e}"))?;
    Ok((ctx, module))
}

/// `softmax(scale q k^T) v` in f64 from the stored (rounded) inputs -> `[B, Lq, H, D]`.
fn reference(q: &[f64], k: &[f64], v: &[f64], d: &AttentionDims) -> Vec<f64> {
    let AttentionDims { batch, heads, len_q, len_k, head_dim: hd, scale, causal } = *d;
    let mut out = vec![0f64; q.len()];
    let mut s = vec![0f64; len_k];
    for b in 0..batch {
        for i in 0..len_q {
            for h in 0..heads {
                let qi = &q[((b * len_q + i) * heads + h) * hd..][..hd];
                for (j, sj) in s.iter_mut().enumerate() {
                    let kj = &k[((b * len_k + j) * heads + h) * hd..][..hd];
                    *sj = if causal && j > i {
                        f64::NEG_INFINITY
                    } else {
                        scale as f64 * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                    };
                }
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = s
                    .iter_mut()
                    .map(|x| {
                        *x = (*x - m).exp();
                        *x
                    })
                    .sum();
                let o = &mut out[((b * len_q + i) * heads + h) * hd..][..hd];
                for (j, p) in s.iter().enumerate() {
                    let vj = &v[((b * len_k + j) * heads + h) * hd..][..hd];
                    o.iter_mut().zip(vj).for_each(|(o, v)| *o += p * v / sum);
                }
            }
        }
    }
    out
}

/// Runs one kernel on one case; returns the number of mismatches (after printing the first).
fn check<T: Elem>(
    ctx: &Arc<CudaContext>,
    module: &Arc<CudaModule>,
    dims: AttentionDims,
    rng: &mut Rng,
) -> usize {
    let kernel = AttentionKernel::for_head_dim(T::DTYPE, dims.head_dim).unwrap();
    let func = module.load_function(&kernel.entry()).unwrap_or_else(|e| panic!("{}: {e}", kernel.entry()));
    let stream = ctx.default_stream();
    let mut random = |n: usize| -> Vec<T> { (0..n).map(|_| T::from_f32(rng.next())).collect() };
    let (q, k, v) =
        (random(dims.q_len().unwrap()), random(dims.kv_len().unwrap()), random(dims.kv_len().unwrap()));
    let (dq, dk, dv) =
        (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap(), stream.clone_htod(&v).unwrap());
    let mut d_o = stream.clone_htod(&vec![T::nan(); q.len()]).unwrap();
    match launch_flash_attention(&stream, &func, &dq, &dk, &dv, &mut d_o, dims) {
        Ok(()) => {}
        Err(AttentionError::SharedMemory { entry, needed, available }) => {
            kiln_kernels::skip_gpu_test(
                &entry,
                &format!("needs {needed} B of shared memory, device allows {available}"),
            );
            return 0;
        }
        Err(e) => panic!("{e}"),
    }
    stream.synchronize().unwrap_or_else(|e| panic!("{} {dims:?}: {e}", kernel.entry()));
    let got: Vec<T> = stream.clone_dtoh(&d_o).unwrap();
    let widen = |x: &[T]| x.iter().map(|e| e.to_f64()).collect::<Vec<f64>>();
    let want = reference(&widen(&q), &widen(&k), &widen(&v), &dims);
    let (atol, rtol) = T::TOL;
    let (hd, heads, len_q) = (dims.head_dim, dims.heads, dims.len_q);
    let mut bad = 0;
    for (idx, (g, w)) in got.iter().map(|g| g.to_f64()).zip(&want).enumerate() {
        // NaN is an unwritten (poisoned) element.
        let err = (g - w).abs();
        if err.is_nan() || err > atol + rtol * w.abs() {
            if bad < 8 {
                let (dd, rest) = (idx % hd, idx / hd);
                let (h, rest) = (rest % heads, rest / heads);
                let (i, b) = (rest % len_q, rest / len_q);
                eprintln!("{} {dims:?}: o[b={b}, i={i}, h={h}, d={dd}] = {g}, want {w}", kernel.entry());
            }
            bad += 1;
        }
    }
    if bad > 0 {
        eprintln!("{} {dims:?}: {bad} of {} elements mismatch", kernel.entry(), got.len());
    }
    bad
}

#[test]
fn flash_attention_matches_f64_reference() {
    let (ctx, module) = match setup() {
        Ok(x) => x,
        Err(why) => {
            kiln_kernels::skip_gpu_test("flash attention GPU test", &why);
            return;
        }
    };
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1;
    eprintln!("flash attention test seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    let causal_cases = CAUSAL_CASES.map(|(b, h, l)| (b, h, l, l, true));
    let cases = CASES.map(|(b, h, lq, lk)| (b, h, lq, lk, false));
    for kernel in AttentionKernel::all() {
        for (batch, heads, len_q, len_k, causal) in cases.into_iter().chain(causal_cases) {
            let head_dim = kernel.head_dim;
            let scale = 1.0 / (head_dim as f32).sqrt();
            let dims = AttentionDims { batch, heads, len_q, len_k, head_dim, scale, causal };
            let bad = match kernel.dtype {
                kiln_kernels::KernelDType::BF16 => check::<half::bf16>(&ctx, &module, dims, &mut rng),
                kiln_kernels::KernelDType::F16 => check::<half::f16>(&ctx, &module, dims, &mut rng),
            };
            if bad > 0 {
                failures.push(format!("{} {dims:?}: {bad} mismatches", kernel.entry()));
            }
        }
    }
    assert!(failures.is_empty(), "seed {seed:#x}:\n{}", failures.join("\n"));
}
