//! Normalisations on the GPU through kiln-kernels' norm family: group norm over NHWC (SiLU
//! optionally fused), layer norm, and the row softmax.
//!
//! The norm launchers (`kiln_kernels::norm::*`) have not landed on this branch yet: each op
//! validates its operands and returns [`crate::Error::Unsupported`] naming the launcher it waits
//! for. Wiring one is a local edit here.

use super::{CudaStorage, not_landed, operand};
use crate::{Result, Tensor};

/// Group norm of `x [N, L, C]` with `groups` groups, `gamma [C]`, `beta [C]`, then SiLU if `silu`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm(
    x: &CudaStorage,
    gamma: &Tensor,
    beta: &Tensor,
    (n, l, c): (usize, usize, usize),
    groups: usize,
    eps: f32,
    silu: bool,
    shape: &[usize],
) -> Result<Tensor> {
    const OP: &str = "group_norm";
    let _ = (operand(OP, gamma)?, operand(OP, beta)?, n, l, c, groups, eps, silu, shape);
    Err(not_landed(OP, x, "kiln_kernels::norm (group norm)"))
}

/// Layer norm over the last dimension `c` of `x`, with `gamma [C]` and `beta [C]`.
pub(crate) fn layer_norm(
    x: &CudaStorage,
    gamma: &Tensor,
    beta: &Tensor,
    c: usize,
    eps: f32,
    shape: &[usize],
) -> Result<Tensor> {
    const OP: &str = "layer_norm";
    let _ = (operand(OP, gamma)?, operand(OP, beta)?, c, eps, shape);
    Err(not_landed(OP, x, "kiln_kernels::norm (layer norm)"))
}

/// Softmax over rows of `c` elements.
pub(crate) fn softmax(x: &CudaStorage, c: usize, shape: &[usize]) -> Result<Tensor> {
    let _ = (c, shape);
    Err(not_landed("softmax", x, "kiln_kernels::norm (softmax)"))
}
