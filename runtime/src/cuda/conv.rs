//! 2-d convolution on the GPU through kiln-kernels' implicit-GEMM conv kernels (NHWC
//! activations, OHWI weights, bias in the epilogue).
//!
//! The launcher (`kiln_kernels::conv::launch_conv2d`) has not landed on this branch yet: the op
//! validates its operands and returns [`crate::Error::Unsupported`]. Wiring it is a local edit
//! here.

use super::{CudaStorage, not_landed, operand};
use crate::cpu::conv::ConvGeometry;
use crate::{Result, Tensor};

/// `x [N, H, W, Cin]` conv `weight [Cout, kh, kw, Cin]` + `bias [Cout]` -> `[N, Ho, Wo, Cout]`.
pub(crate) fn conv2d(
    x: &CudaStorage,
    weight: &Tensor,
    bias: Option<&Tensor>,
    g: ConvGeometry,
    shape: &[usize],
) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let _ = (operand(OP, weight)?, bias.map(|b| operand(OP, b)).transpose()?, g, shape);
    Err(not_landed(OP, x, "kiln_kernels::conv::launch_conv2d"))
}
