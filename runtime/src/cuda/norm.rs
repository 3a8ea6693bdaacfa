//! Normalisations on the GPU through kiln-kernels' norm family: group norm over NHWC (SiLU
//! optionally fused; three launches: partial statistics, finalize, apply, with an f32 workspace
//! from the caching allocator), layer norm and the row softmax (one launch each; one warp per
//! row, f32 arithmetic). The flash-attention kernels fuse their own softmax; the unfused
//! attention path uses this one.

use kiln_kernels::Family;
use kiln_kernels::norm::{
    self as nk, GroupNormDims, GroupNormFunctions, LayerNormDims, NormKernel, NormOp, SoftmaxDims,
};

use super::{CudaDevice, CudaStorage, Elem, dispatch_half, launch_error, operand};
use crate::{DType, Result, Tensor};

/// The function of norm kernel `op` for storage type `T`.
pub(crate) fn func<T: kiln_kernels::launch::KernelElem>(
    dev: &CudaDevice,
    name: &'static str,
    op: NormOp,
) -> Result<cudarc::driver::CudaFunction> {
    dev.function(name, Family::Norm, &NormKernel { op, dtype: T::DTYPE }.entry())
}

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
    let dev = x.device();
    let (g, b) = (operand(OP, gamma)?, operand(OP, beta)?);
    let dims = GroupNormDims { n, l, c, groups, eps, silu };
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let stats = func::<T>(dev, OP, NormOp::GroupNormStats)?;
        let finalize = func::<T>(dev, OP, NormOp::GroupNormFinalize)?;
        let apply = func::<T>(dev, OP, NormOp::GroupNormApply)?;
        let funcs = GroupNormFunctions { stats: &stats, finalize: &finalize, apply: &apply };
        // Returned to the allocator when dropped below; stream order keeps it alive for the
        // kernels that use it.
        let mut workspace = CudaStorage::alloc(dev, DType::F32, dims.workspace_len(), OP)?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, x.len(), OP)?;
        nk::launch_group_norm::<T>(
            dev.stream(),
            funcs,
            &x.view(),
            &g.view(),
            &b.view(),
            &mut y.view_mut(),
            &mut workspace.view_mut::<f32>(),
            dims,
        )
        .map_err(launch_error(OP, T::DTYPE, dev.device()))?;
        Tensor::from_cuda_storage(y, shape)
    })
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
    let dev = x.device();
    let (g, b) = (operand(OP, gamma)?, operand(OP, beta)?);
    let rows = x.len().checked_div(c).unwrap_or(0);
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let f = func::<T>(dev, OP, NormOp::LayerNorm)?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, x.len(), OP)?;
        let dims = LayerNormDims { rows, c, eps };
        nk::launch_layer_norm::<T>(
            dev.stream(),
            &f,
            &x.view(),
            &g.view(),
            &b.view(),
            &mut y.view_mut(),
            dims,
        )
        .map_err(launch_error(OP, T::DTYPE, dev.device()))?;
        Tensor::from_cuda_storage(y, shape)
    })
}

/// Softmax over rows of `c` elements.
pub(crate) fn softmax(x: &CudaStorage, c: usize, shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "softmax";
    let dev = x.device();
    let rows = x.len().checked_div(c).unwrap_or(0);
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let f = func::<T>(dev, OP, NormOp::Softmax)?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, x.len(), OP)?;
        if rows * c > 0 {
            let dims = SoftmaxDims { rows, c, causal: None };
            nk::launch_softmax::<T>(dev.stream(), &f, &x.view(), &mut y.view_mut(), dims)
                .map_err(launch_error(OP, T::DTYPE, dev.device()))?;
        }
        Tensor::from_cuda_storage(y, shape)
    })
}
