//! Multi-head attention on the GPU through kiln-kernels' fused flash-attention forward.
//!
//! The launcher (`kiln_kernels::attention::launch_flash_attention`) has not landed on this
//! branch yet: the op validates its operands and returns [`crate::Error::Unsupported`]. Wiring
//! it is a local edit here.

use super::{CudaStorage, not_landed, operand};
use crate::cpu::attention::AttentionGeometry;
use crate::{Result, Tensor};

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
    let _ = (operand(OP, k)?, operand(OP, v)?, g, scale, shape);
    Err(not_landed(OP, q, "kiln_kernels::attention::launch_flash_attention"))
}
