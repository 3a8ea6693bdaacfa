//! Multi-head attention on the GPU, by one of two paths:
//!
//! - **fused**: kiln-kernels' flash-attention forward ([`launch_flash_attention`]: online
//!   softmax, no materialised score matrix, causal mask in the kernel) for the head dims it is
//!   instantiated for (40, 64, 80, 128, 160: every head dim of the SD 1.5 / SDXL UNets and the
//!   CLIP text encoders);
//! - **unfused**, for every other head dim (the VAE's mid-block attention: one head of 512,
//!   or 128 on smaller VAEs, and the tiny test models' 8 and 16) and where the fused kernel's
//!   tile does not fit the device's shared memory: per batch and per chunk of query rows,
//!   1. the scores `scale * Q K^T` of every head by one strided-batched cuBLASLt GEMM
//!      (bf16/f16 inputs, f32 compute, **f32 output**);
//!   2. the row softmax kernel from those f32 scores (`softmax_f32_<dtype>`, with the causal
//!      mask when asked) to the probabilities as two terms of the tensor's dtype,
//!      `P = P_hi + P_lo` (`P_hi` is `P` rounded, `P_lo` the rounding remainder, rounded);
//!   3. `P_hi V`, then `+ P_lo V`, by two strided-batched GEMMs (tensor cores, f32 output)
//!      into the chunk's f32 output rows, rounded once into the output's `[B, Lq, H, D]` rows
//!      by the cast kernel.
//!
//!   The chunk is sized so that one chunk's f32 scores and two half-precision probability
//!   terms, `H x rows x Lk` elements of each, take at most [`SCORE_BUDGET`] bytes, which
//!   bounds the memory whatever the token count (the VAE at 1024x1024 has 16384 tokens: 2 GiB
//!   unchunked); the f32 output rows add `rows x H x D` f32s.
//!
//! Why f32 scores (issue 11, test `issue11_unfused_attention_keeps_f32_scores`): rounded to
//! bf16/f16, a score `s` would be off by up to half an ulp of `s`, and the softmax turns that
//! absolute error of the exponent into a relative error of the probability, however small the
//! scores' spread (the softmax is shift-invariant: exact attention does not care how large the
//! scores are). At `|s|` near 100, half a bf16 ulp is 0.25 and a probability is off by up to
//! 28%. diffusers (PyTorch's SDPA) and the fused kernel never round scores to half precision.
//!
//! Why two probability terms: `P` rounded once to bf16 is off by up to `u |p|` (`u = 2^-8`), so
//! an output row is off by up to `u sum_j p_j |v_j|`; where the row averages few keys with
//! cancelling values (the first rows of a causal attention) that is several times the row's
//! own rounding, and several times the CPU backend's tolerance when the other rows are small
//! (the 12000-token causal case of the cuda_ops tests). `P_hi + P_lo` is `P` to about `u^2`, so
//! the output is rounded only once, as the CPU backend's is, and both GEMMs stay on the tensor
//! cores; the price is a second `P V` GEMM (1.5 times the GEMM work of one rounding).
//!
//! Why cuBLASLt rather than a generic tiled kernel: at head dim 512 the work is large GEMMs
//! (`2 Lq Lk D` FLOPs each, 0.28 TFLOP for 16384 tokens) that cuBLASLt runs on the tensor
//! cores near peak, where a kernel without a compile-time head dim would run on the CUDA cores
//! at a small fraction of that; the extra traffic of writing the f32 scores, reading them twice
//! and writing and reading the two probability terms (20 bytes per score in bf16, against
//! `6 D` FLOPs of GEMM) is a few percent of the GEMM time at these sizes.

use cudarc::cublaslt::MatmulConfig;
use kiln_kernels::Family;
use kiln_kernels::attention::{AttentionDims, AttentionError, AttentionKernel, launch_flash_attention};
use kiln_kernels::elementwise::{self as ew, CastElem, CastType, ElementwiseKernel};
use kiln_kernels::norm::{self as nk, CausalMask, NormOp, SoftmaxDims};

use super::strided_gemm::{GemmPointers, gemm_at};
use super::{
    CudaDevice, CudaStorage, Elem, dispatch_half, driver_error, kernel_dtype, launch_error, operand,
};
use crate::cpu::attention::AttentionGeometry;
use crate::{DType, Device, Error, Result, Tensor};

/// Most bytes of f32 scores plus half-precision probability terms the unfused path keeps at
/// once (one chunk of query rows, all heads).
pub(crate) const SCORE_BUDGET: usize = 256 << 20;

/// Bytes per score of the unfused path with probabilities of `elem_bytes`: the f32 score and
/// the probability's two terms `P_hi`, `P_lo`, each in its own buffer.
pub(crate) const fn score_bytes(elem_bytes: usize) -> usize {
    4 + 2 * elem_bytes
}

/// `softmax(scale * Q K^T) V` per batch and head: `q [B, Lq, H, D]`, `k`, `v` `[B, Lk, H, D]`;
/// causal (`Lq == Lk`, checked by the op) masks the keys after each query.
pub(crate) fn attention(
    q: &CudaStorage,
    k: &Tensor,
    v: &Tensor,
    g: AttentionGeometry,
    scale: f32,
    shape: &[usize],
) -> Result<Tensor> {
    const OP: &str = "attention";
    let dev = q.device();
    let (ks, vs) = (operand(OP, k)?, operand(OP, v)?);
    let AttentionGeometry { b, lq, lk, h, d, causal } = g;
    let op = if causal { "causal_attention" } else { OP };
    let dims = AttentionDims { batch: b, heads: h, len_q: lq, len_k: lk, head_dim: d, scale, causal };
    let shapes = || format!("q {shape:?}, k/v {:?}, causal {causal}", k.dims());
    dispatch_half!(op, q.dtype(), dev.device(), |T| {
        let mut o = CudaStorage::alloc(dev, T::DTYPE, q.len(), op)?;
        if o.is_empty() {
            return Tensor::from_cuda_storage(o, shape);
        }
        if let Some(kernel) = AttentionKernel::for_head_dim(kernel_dtype::<T>(), d) {
            let f = dev.function(op, Family::Attention, &kernel.entry())?;
            let fused = launch_flash_attention::<T>(
                dev.stream(),
                &f,
                &q.view(),
                &ks.view(),
                &vs.view(),
                &mut o.view_mut(),
                dims,
            );
            match fused {
                Ok(()) => return Tensor::from_cuda_storage(o, shape), // [B, Lq, H, D]
                // The tile does not fit this device's shared memory: the unfused path below.
                Err(AttentionError::SharedMemory { .. }) => {}
                Err(e) => return Err(attention_error(op, e, T::DTYPE, dev.device(), &shapes())),
            }
        }
        unfused::<T>(dev, op, (q, ks, vs), &mut o, g, scale)?;
        Tensor::from_cuda_storage(o, shape) // [B, Lq, H, D]
    })
}

/// Query rows per chunk of the unfused path: as many as keep `heads x rows x len_k` scores of
/// `bytes_per_score` each ([`score_bytes`]) within [`SCORE_BUDGET`], at least 1, at most
/// `len_q`.
pub(crate) fn chunk_rows(heads: usize, len_q: usize, len_k: usize, bytes_per_score: usize) -> usize {
    let per_row = heads.saturating_mul(len_k).saturating_mul(bytes_per_score).max(1);
    (SCORE_BUDGET / per_row).clamp(1, len_q.max(1))
}

/// Bytes of the cuBLASLt workspace the unfused path gives its GEMMs (NVIDIA's recommendation
/// for Hopper; from the caching allocator, so allocated once and then reused).
const GEMM_WORKSPACE: usize = 32 << 20;

/// The first GEMM of a chunk: `S[h] = scale * Q[h] K[h]^T` -> f32 scores `[H, rows, keys]`, with
/// `a` at K's token 0 and `b` at Q's first row of the chunk (both head 0). Column-major:
/// `S^T (keys x rows, ld keys) = K (stored d x keys, ld H*D, transposed) * Q^T (d x rows, ld
/// H*D)`; heads are `D` elements apart in q and k, `rows * keys` in the scores.
fn scores_gemm(heads: i32, d: usize, rows: usize, keys: usize, scale: f32) -> MatmulConfig {
    let hd = heads as usize * d;
    MatmulConfig {
        transa: true,
        transb: false,
        transc: false,
        m: keys as u64,
        n: rows as u64,
        k: d as u64,
        alpha: scale,
        lda: hd as i64,
        ldb: hd as i64,
        beta: 0.0,
        ldc: keys as i64,
        stride_a: Some(d as i64),
        stride_b: Some(d as i64),
        stride_c: Some((rows * keys) as i64),
        stride_bias: None,
        batch_size: (heads > 1).then_some(heads),
    }
}

/// The second GEMM of a chunk, once per half of `P = P_hi + P_lo`: `O[h] = P[h] V[h] + beta
/// O[h]` into the chunk's f32 output rows (`[rows, H*D]`, laid out as o's), with `a` at V's
/// token 0 and `c` at the first output row. Column-major: `O^T (d x rows, ld H*D) = V^T (d x keys, ld
/// H*D) * P^T (keys x rows, ld keys)`; heads are `D` elements apart in v and o, `rows * keys`
/// in the probabilities.
fn output_gemm(heads: i32, d: usize, rows: usize, keys: usize, beta: f32) -> MatmulConfig {
    let hd = heads as usize * d;
    MatmulConfig {
        transa: false,
        transb: false,
        transc: false,
        m: d as u64,
        n: rows as u64,
        k: keys as u64,
        alpha: 1.0,
        lda: hd as i64,
        ldb: keys as i64,
        beta,
        ldc: hd as i64,
        stride_a: Some(d as i64),
        stride_b: Some((rows * keys) as i64),
        stride_c: Some(d as i64),
        stride_bias: None,
        batch_size: (heads > 1).then_some(heads),
    }
}

/// The unfused attention into `o` (see the module comment); `o` is not empty.
fn unfused<T: Elem + kiln_kernels::launch::KernelElem + CastElem>(
    dev: &std::sync::Arc<CudaDevice>,
    op: &'static str,
    (q, k, v): (&CudaStorage, &CudaStorage, &CudaStorage),
    o: &mut CudaStorage,
    g: AttentionGeometry,
    scale: f32,
) -> Result<()>
where
    cudarc::cublaslt::CudaBlasLT: cudarc::cublaslt::Matmul<T> + cudarc::cublaslt::Matmul<f32>,
{
    let AttentionGeometry { b, lq, lk, h, d, causal } = g;
    let hd = h * d; // row stride of q, k, v and o
    let es = std::mem::size_of::<T>();
    let chunk = chunk_rows(h, lq, lk, score_bytes(es));
    let too_large = |what: &str| {
        Error::unsupported(
            op,
            <T as Elem>::DTYPE,
            dev.device(),
            format!("{what} exceeds cuBLASLt's 32-bit count"),
        )
    };
    let heads = i32::try_from(h).map_err(|_| too_large("head count"))?;
    let softmax = super::norm::func::<T>(dev, op, NormOp::SoftmaxFromF32)?;
    let cast = ElementwiseKernel::Cast { from: CastType::F32, to: T::CAST };
    let cast = dev.function(op, Family::Elementwise, &cast.entry())?;
    let scores = CudaStorage::alloc(dev, DType::F32, h * chunk * lk, op)?; // [H, chunk, Lk] f32
    let mut p_hi = CudaStorage::alloc(dev, <T as Elem>::DTYPE, h * chunk * lk, op)?; // [H, chunk, Lk]
    let mut p_lo = CudaStorage::alloc(dev, <T as Elem>::DTYPE, h * chunk * lk, op)?; // [H, chunk, Lk]
    let o32 = CudaStorage::alloc(dev, DType::F32, chunk * hd, op)?; // [chunk, H*D] f32
    let workspace = CudaStorage::alloc(dev, DType::F32, GEMM_WORKSPACE / 4, op)?;
    // Element offsets of q, k, v and o become byte offsets from the buffers' base addresses;
    // the chunk buffers are used from their starts.
    let at = |s: &CudaStorage, elems: usize| s.raw_ptr() + (elems * es) as u64;
    for bi in 0..b {
        for q0 in (0..lq).step_by(chunk) {
            let rows = chunk.min(lq - q0);
            // Causal: the chunk's queries see keys 0..q0 + rows only.
            let keys = if causal { q0 + rows } else { lk };
            let shapes = || {
                format!("batch {bi}, query rows {q0}..{} of {lq}, {keys} keys, {h} heads of {d}", q0 + rows)
            };
            let kv_off = bi * lk * hd; // token 0 of batch bi in k and v
            let q_off = (bi * lq + q0) * hd; // token q0 of batch bi in q and o
            let ptrs = |a, b, c| GemmPointers {
                a,
                b,
                c,
                workspace: workspace.raw_ptr(),
                workspace_bytes: GEMM_WORKSPACE,
            };

            let cfg = scores_gemm(heads, d, rows, keys, scale);
            // SAFETY: head h's K is keys rows of d elements at k + kv_off + h*d with stride H*D,
            // inside batch bi's lk * H*D elements; Q likewise inside rows q0..q0+rows of batch
            // bi; S takes H * rows * keys <= H * chunk * lk f32s of `scores`. All three buffers
            // live until after the GEMM runs (dropped after enqueueing, stream-ordered).
            unsafe {
                gemm_at::<T, f32>(dev, op, cfg, ptrs(at(k, kv_off), at(q, q_off), scores.raw_ptr()), shapes)?;
            }

            // f32 scores -> probabilities P = P_hi + P_lo, both of T, [H, rows, keys] each.
            let mask = causal.then_some(CausalMask { rows_per_matrix: rows, offset: q0 });
            let dims = SoftmaxDims { rows: h * rows, c: keys, causal: mask };
            let n = h * rows * keys;
            nk::launch_softmax_from_f32::<T>(
                dev.stream(),
                &softmax,
                &scores.view::<f32>().slice(..n),
                &mut p_hi.view_mut::<T>().slice_mut(..n),
                Some(&mut p_lo.view_mut::<T>().slice_mut(..n)),
                dims,
            )
            .map_err(launch_error(op, <T as Elem>::DTYPE, dev.device()))?;

            // O = P_hi V + P_lo V, summed in f32 ([rows, H*D]), then rounded once into o.
            for (p, beta) in [(&p_hi, 0.0), (&p_lo, 1.0)] {
                let cfg = output_gemm(heads, d, rows, keys, beta);
                // SAFETY: as above, with P the H * rows * keys elements of `p` the softmax
                // wrote and O the rows * H*D f32s of `o32`; each head's output columns
                // h*D..h*D+D are disjoint from the other heads' and from the inputs.
                unsafe {
                    gemm_at::<T, f32>(dev, op, cfg, ptrs(at(v, kv_off), p.raw_ptr(), o32.raw_ptr()), shapes)?;
                }
            }
            let rows_out = q_off..q_off + rows * hd; // rows q0..q0+rows of batch bi, contiguous
            ew::launch_cast::<f32, T>(
                dev.stream(),
                &cast,
                &o32.view::<f32>().slice(..rows * hd),
                &mut o.view_mut::<T>().slice_mut(rows_out),
            )
            .map_err(launch_error(op, <T as Elem>::DTYPE, dev.device()))?;
        }
    }
    Ok(())
}

fn attention_error(op: &'static str, e: AttentionError, dtype: DType, device: Device, shapes: &str) -> Error {
    match e {
        AttentionError::Driver(source) => driver_error(op, device, "flash attention launch", source),
        e => Error::unsupported(op, dtype, device, format!("{e} ({shapes})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cuBLAS's strided-batched GEMM on host slices, as its documentation defines it
    /// (column-major, `C = alpha op(A) op(B) + beta C`, matrix `i` of each operand at
    /// `i * stride`).
    fn host_gemm(cfg: &MatmulConfig, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (m, n, k) = (cfg.m as usize, cfg.n as usize, cfg.k as usize);
        let (lda, ldb, ldc) = (cfg.lda as usize, cfg.ldb as usize, cfg.ldc as usize);
        let batch = cfg.batch_size.unwrap_or(1) as usize;
        let stride = |s: Option<i64>| if cfg.batch_size.is_some() { s.unwrap() as usize } else { 0 };
        let (sa, sb, sc) = (stride(cfg.stride_a), stride(cfg.stride_b), stride(cfg.stride_c));
        for i in 0..batch {
            for col in 0..n {
                for row in 0..m {
                    let mut acc = 0.0;
                    for kk in 0..k {
                        let av =
                            if cfg.transa { a[i * sa + kk + row * lda] } else { a[i * sa + row + kk * lda] };
                        let bv =
                            if cfg.transb { b[i * sb + col + kk * ldb] } else { b[i * sb + kk + col * ldb] };
                        acc += av * bv;
                    }
                    let dst = &mut c[i * sc + row + col * ldc];
                    // beta = 0: C is not read (BLAS semantics), so NaN there does not propagate.
                    *dst = if cfg.beta == 0.0 { cfg.alpha * acc } else { cfg.alpha * acc + cfg.beta * *dst };
                }
            }
        }
    }

    /// The unfused path's chunking, GEMM configurations and causal softmax mask replayed on the
    /// host reproduce the CPU backend's attention (the index math the GPU cannot be asked
    /// about here).
    #[test]
    fn unfused_plan_replayed_on_the_host_matches_cpu_attention() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
                })
                .collect()
        };
        for (b, lq, lk, h, d, causal, chunk) in [
            (2, 13, 13, 3, 5, true, 4),
            (2, 13, 13, 3, 5, false, 5),
            (1, 9, 7, 1, 8, false, 2),
            (2, 11, 11, 2, 3, true, 11),
            (1, 6, 6, 2, 4, true, 1),
        ] {
            let (q, k, v) = (rnd(b * lq * h * d), rnd(b * lk * h * d), rnd(b * lk * h * d));
            let scale = 0.7;
            let g = AttentionGeometry { b, lq, lk, h, d, causal };
            let want = crate::cpu::attention::attention_f32(&q, &k, &v, g, scale, 4);
            let hd = h * d;
            let mut o = vec![f32::NAN; q.len()];
            for bi in 0..b {
                for q0 in (0..lq).step_by(chunk) {
                    let rows = chunk.min(lq - q0);
                    let keys = if causal { q0 + rows } else { lk };
                    let (kv_off, q_off) = (bi * lk * hd, (bi * lq + q0) * hd);
                    let mut s = vec![f32::NAN; h * rows * keys];
                    host_gemm(
                        &scores_gemm(h as i32, d, rows, keys, scale),
                        &k[kv_off..],
                        &q[q_off..],
                        &mut s,
                    );
                    // The softmax kernel's mask: row r keeps (r % rows) + q0 + 1 columns.
                    for (r, row) in s.chunks_mut(keys).enumerate() {
                        let valid = if causal { (r % rows + q0 + 1).min(keys) } else { keys };
                        let m = row[..valid].iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                        let sum: f32 = row[..valid].iter().map(|x| (x - m).exp()).sum();
                        for (c, x) in row.iter_mut().enumerate() {
                            *x = if c < valid { (*x - m).exp() / sum } else { 0.0 };
                        }
                    }
                    // P V as P_hi V + P_lo V (here P_hi = P, P_lo = 0: the index math).
                    host_gemm(&output_gemm(h as i32, d, rows, keys, 0.0), &v[kv_off..], &s, &mut o[q_off..]);
                    let zeros = vec![0.0; s.len()];
                    host_gemm(
                        &output_gemm(h as i32, d, rows, keys, 1.0),
                        &v[kv_off..],
                        &zeros,
                        &mut o[q_off..],
                    );
                }
            }
            for (i, (g, w)) in o.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-5,
                    "{b} {lq} {lk} {h} {d} causal {causal} chunk {chunk}: [{i}] {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn chunks_bound_the_scores_and_probabilities() {
        let bf16 = score_bytes(2);
        assert_eq!(bf16, 8);
        // The VAE at 1024x1024: 16384 tokens, one head, f32 scores and two bf16 probability
        // terms: 2048 rows (256 MiB) a chunk, 8 chunks.
        assert_eq!(chunk_rows(1, 16384, 16384, bf16), 2048);
        assert_eq!(chunk_rows(1, 4096, 4096, bf16), 4096);
        // The chunked case of the cuda_ops tests: 4 chunks of 2796 rows, then 816.
        assert_eq!(chunk_rows(1, 12_000, 12_000, bf16), 2796);
        assert!(chunk_rows(8, 100_000, 100_000, bf16) * 8 * 100_000 * bf16 <= SCORE_BUDGET);
        assert_eq!(chunk_rows(1, 5, 1 << 30, bf16), 1);
    }
}
