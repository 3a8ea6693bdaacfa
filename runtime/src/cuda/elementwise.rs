//! Element-wise ops on the GPU through kiln-kernels' elementwise family: activations (GELU,
//! SiLU, GEGLU), broadcast add and multiply, affine maps, casts, nearest upsampling and
//! permutation.
//!
//! The elementwise launchers (`kiln_kernels::elementwise::*`) have not landed on this branch
//! yet: each op validates its operands and returns [`crate::Error::Unsupported`] naming the
//! launcher it waits for. Wiring one is a local edit here.

use super::{CudaStorage, kernel_dtype, not_landed, operand};
use crate::cpu::binary::BinaryOp;
use crate::{DType, Result, Tensor};

/// GELU (erf form), element-wise.
pub(crate) fn gelu(x: &CudaStorage, shape: &[usize]) -> Result<Tensor> {
    let _ = shape;
    Err(not_landed("gelu", x, "kiln_kernels::elementwise (gelu)"))
}

/// SiLU, element-wise.
pub(crate) fn silu(x: &CudaStorage, shape: &[usize]) -> Result<Tensor> {
    let _ = shape;
    Err(not_landed("silu", x, "kiln_kernels::elementwise (silu)"))
}

/// GEGLU: `x [R, 2N] -> hidden * gelu(gate)` `[R, N]`.
pub(crate) fn geglu(x: &CudaStorage, n: usize, shape: &[usize]) -> Result<Tensor> {
    let _ = (n, shape);
    Err(not_landed("geglu", x, "kiln_kernels::elementwise (geglu)"))
}

/// Broadcast add or multiply of `a` (shape `a_dims`) and `rhs` into `shape`.
pub(crate) fn binary(
    op: &'static str,
    bop: BinaryOp,
    a: &CudaStorage,
    a_dims: &[usize],
    rhs: &Tensor,
    shape: &[usize],
) -> Result<Tensor> {
    let _ = (bop, a_dims, shape, operand(op, rhs)?);
    Err(not_landed(op, a, "kiln_kernels::elementwise (broadcast add/mul)"))
}

/// `x * mul + add`, element-wise.
pub(crate) fn affine(x: &CudaStorage, mul: f32, add: f32, shape: &[usize]) -> Result<Tensor> {
    let _ = (mul, add, shape);
    Err(not_landed("affine", x, "kiln_kernels::elementwise (affine)"))
}

/// Converts `x` to `dtype` (which differs from its own) into a tensor of `shape`.
pub(crate) fn cast(x: &CudaStorage, dtype: DType, shape: &[usize]) -> Result<Tensor> {
    let _ = (kernel_dtype(dtype), shape);
    Err(not_landed("to_dtype", x, "kiln_kernels::elementwise (cast)"))
}

/// `[N, H, W, C] -> [N, 2H, 2W, C]` nearest upsampling.
pub(crate) fn upsample_nearest2x(x: &CudaStorage, dims: (usize, usize, usize, usize)) -> Result<Tensor> {
    let _ = dims;
    Err(not_landed("upsample_nearest2x", x, "kiln_kernels::elementwise (upsample)"))
}

/// Permutes the dimensions of `x` (shape `dims`) by `perm` into `shape`.
pub(crate) fn permute(x: &CudaStorage, dims: &[usize], perm: &[usize], shape: &[usize]) -> Result<Tensor> {
    let _ = (dims, perm, shape);
    Err(not_landed("permute", x, "kiln_kernels::elementwise (permute)"))
}
