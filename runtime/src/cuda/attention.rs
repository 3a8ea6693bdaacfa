//! Multi-head attention on the GPU through kiln-kernels' fused flash-attention forward
//! ([`launch_flash_attention`]: online softmax, no materialised score matrix), for the head
//! dims it is instantiated for (40, 64, 80, 128, 160); other head dims are
//! [`crate::Error::Unsupported`].

use kiln_kernels::Family;
use kiln_kernels::attention::{AttentionDims, AttentionError, AttentionKernel, launch_flash_attention};

use super::{CudaStorage, Elem, dispatch_half, driver_error, kernel_dtype, operand};
use crate::cpu::attention::AttentionGeometry;
use crate::{DType, Device, Error, Result, Tensor};

/// `softmax(scale * Q K^T) V` per batch and head: `q [B, Lq, H, D]`, `k`, `v` `[B, Lk, H, D]`.
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
    if causal {
        return Err(Error::unsupported(
            "causal_attention",
            q.dtype(),
            q.device().device(),
            "the flash-attention kernel has no causal mask yet; run the text encoder on the CPU",
        ));
    }
    let dims = AttentionDims { batch: b, heads: h, len_q: lq, len_k: lk, head_dim: d, scale };
    let shapes = || format!("q {shape:?}, k/v {:?}", k.dims());
    dispatch_half!(OP, q.dtype(), dev.device(), |T| {
        let kernel = AttentionKernel::for_head_dim(kernel_dtype::<T>(), d).ok_or_else(|| {
            Error::unsupported(
                OP,
                T::DTYPE,
                dev.device(),
                format!(
                    "no flash-attention kernel for head dim {d} (have {:?}): {}",
                    AttentionKernel::HEAD_DIMS,
                    shapes()
                ),
            )
        })?;
        let f = dev.function(OP, Family::Attention, &kernel.entry())?;
        let mut o = CudaStorage::alloc(dev, T::DTYPE, q.len(), OP)?;
        launch_flash_attention::<T>(
            dev.stream(),
            &f,
            &q.view(),
            &ks.view(),
            &vs.view(),
            &mut o.view_mut(),
            dims,
        )
        .map_err(|e| attention_error(e, T::DTYPE, dev.device(), &shapes()))?;
        Tensor::from_cuda_storage(o, shape) // [B, Lq, H, D]
    })
}

fn attention_error(e: AttentionError, dtype: DType, device: Device, shapes: &str) -> Error {
    match e {
        AttentionError::Driver(source) => driver_error("attention", device, "flash attention launch", source),
        e => Error::unsupported("attention", dtype, device, format!("{e} ({shapes})")),
    }
}
