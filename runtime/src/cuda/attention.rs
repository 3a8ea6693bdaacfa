//! Multi-head attention on the GPU, by one of two paths:
//!
//! - **fused**: kiln-kernels' flash-attention forward ([`launch_flash_attention`]: online
//!   softmax, no materialised score matrix, causal mask in the kernel) for the head dims it is
//!   instantiated for (40, 64, 80, 128, 160: every head dim of the SD 1.5 / SDXL UNets and the
//!   CLIP text encoders);
//! - **unfused**, for every other head dim (the VAE's mid-block attention: one head of 512,
//!   or 128 on smaller VAEs, and the tiny test models' 8 and 16) and where the fused kernel's
//!   tile does not fit the device's shared memory: per batch and per chunk of query rows, the
//!   scores `scale * Q K^T` of every head by one strided-batched cuBLASLt GEMM (f32 compute,
//!   stored in the tensor's dtype), the row softmax kernel in place (with the causal mask when
//!   asked), then `P V` by a second strided-batched GEMM written straight into the output's
//!   `[B, Lq, H, D]` rows. The chunk is sized so the scores of one chunk, `H x rows x Lk`
//!   elements, take at most [`SCORE_BUDGET`] bytes, which bounds the memory whatever the token
//!   count (the VAE at 1024x1024 has 16384 tokens: 512 MiB of bf16 scores unchunked).
//!
//! Why cuBLASLt rather than a generic tiled kernel: at head dim 512 the work is two large
//! GEMMs (`4 Lq Lk D` FLOPs, 0.55 TFLOP for 16384 tokens) that cuBLASLt runs on the tensor
//! cores near peak, where a kernel without a compile-time head dim would run on the CUDA cores
//! at a small fraction of that; the extra traffic of writing and re-reading the scores is a few
//! percent of the GEMM time at these sizes. The cost is precision: the scores are rounded to
//! bf16/f16 before the softmax (as PyTorch's unfused `baddbmm` + `softmax` path does in half
//! precision), which the fused kernel avoids.

use cudarc::cublaslt::MatmulConfig;
use kiln_kernels::Family;
use kiln_kernels::attention::{AttentionDims, AttentionError, AttentionKernel, launch_flash_attention};
use kiln_kernels::norm::{self as nk, CausalMask, NormOp, SoftmaxDims};

use super::matmul::gemm;
use super::{
    CudaDevice, CudaStorage, Elem, dispatch_half, driver_error, kernel_dtype, launch_error, operand,
};
use crate::cpu::attention::AttentionGeometry;
use crate::{DType, Device, Error, Result, Tensor};

/// Most bytes of scores the unfused path keeps at once (one chunk of query rows, all heads).
pub(crate) const SCORE_BUDGET: usize = 256 << 20;

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
/// `elem_bytes` each within [`SCORE_BUDGET`], at least 1, at most `len_q`.
pub(crate) fn chunk_rows(heads: usize, len_q: usize, len_k: usize, elem_bytes: usize) -> usize {
    let per_row = heads.saturating_mul(len_k).saturating_mul(elem_bytes).max(1);
    (SCORE_BUDGET / per_row).clamp(1, len_q.max(1))
}

/// The unfused attention into `o` (see the module comment); `o` is not empty.
fn unfused<T: Elem + kiln_kernels::launch::KernelElem>(
    dev: &std::sync::Arc<CudaDevice>,
    op: &'static str,
    (q, k, v): (&CudaStorage, &CudaStorage, &CudaStorage),
    o: &mut CudaStorage,
    g: AttentionGeometry,
    scale: f32,
) -> Result<()>
where
    cudarc::cublaslt::CudaBlasLT: cudarc::cublaslt::Matmul<T>,
{
    let AttentionGeometry { b, lq, lk, h, d, causal } = g;
    let hd = h * d; // row stride of q, k, v and o
    let chunk = chunk_rows(h, lq, lk, std::mem::size_of::<T>());
    let too_large = |what: &str| {
        Error::unsupported(
            op,
            <T as Elem>::DTYPE,
            dev.device(),
            format!("{what} exceeds cuBLASLt's 32-bit count"),
        )
    };
    let heads = i32::try_from(h).map_err(|_| too_large("head count"))?;
    let softmax = super::norm::func::<T>(dev, op, NormOp::Softmax)?;
    let mut scores = CudaStorage::alloc(dev, <T as Elem>::DTYPE, h * chunk * lk, op)?; // [H, chunk, Lk]
    let (qv, kv, vv) = (q.view::<T>(), k.view::<T>(), v.view::<T>());
    for bi in 0..b {
        let (kb, vb) =
            (kv.slice(bi * lk * hd..(bi + 1) * lk * hd), vv.slice(bi * lk * hd..(bi + 1) * lk * hd));
        for q0 in (0..lq).step_by(chunk) {
            let rows = chunk.min(lq - q0);
            // Causal: the chunk's queries see keys 0..q0 + rows only.
            let keys = if causal { q0 + rows } else { lk };
            let shapes = || {
                format!("batch {bi}, query rows {q0}..{} of {lq}, {keys} keys, {h} heads of {d}", q0 + rows)
            };
            let rows_q = (bi * lq + q0) * hd..(bi * lq + q0 + rows) * hd;
            let mut s = scores.view_mut::<T>();
            let mut s = s.slice_mut(..h * rows * keys); // [H, rows, keys]

            // S[h] = scale * Q[h] K[h]^T. Column-major: S^T (keys x rows, ld keys) = K (stored
            // d x keys, ld H*D, transposed) * Q^T (d x rows, ld H*D); heads D elements apart.
            let cfg = MatmulConfig {
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
                batch_size: (h > 1).then_some(heads),
            };
            gemm::<T>(dev, op, cfg, &kb, &qv.slice(rows_q.clone()), &mut s, None, d, shapes)?;

            let mask = causal.then_some(CausalMask { rows_per_matrix: rows, offset: q0 });
            let dims = SoftmaxDims { rows: h * rows, c: keys, causal: mask };
            nk::launch_softmax_in_place::<T>(dev.stream(), &softmax, &mut s, dims).map_err(launch_error(
                op,
                <T as Elem>::DTYPE,
                dev.device(),
            ))?;

            // O[h] = P[h] V[h]. Column-major: O^T (d x rows, ld H*D) = V^T (d x keys, ld H*D) *
            // P^T (keys x rows, ld keys); heads D elements apart in V and O.
            let cfg = MatmulConfig {
                transa: false,
                transb: false,
                transc: false,
                m: d as u64,
                n: rows as u64,
                k: keys as u64,
                alpha: 1.0,
                lda: hd as i64,
                ldb: keys as i64,
                beta: 0.0,
                ldc: hd as i64,
                stride_a: Some(d as i64),
                stride_b: Some((rows * keys) as i64),
                stride_c: Some(d as i64),
                stride_bias: None,
                batch_size: (h > 1).then_some(heads),
            };
            let p = s.as_view();
            let mut ov = o.view_mut::<T>();
            gemm::<T>(dev, op, cfg, &vb, &p, &mut ov.slice_mut(rows_q), None, keys, shapes)?;
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
