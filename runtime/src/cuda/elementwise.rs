//! Element-wise ops on the GPU through kiln-kernels' elementwise family: activations (GELU,
//! SiLU, GEGLU), broadcast add and multiply, affine maps, casts, nearest upsampling and
//! permutation (a bitwise copy by element width, so for every dtype, f32 included).
//!
//! Each op allocates its output from the device's caching allocator, looks its entry point up
//! by the typed kernel table ([`ElementwiseKernel`]) and enqueues one launch.

use half::{bf16, f16};
use kiln_kernels::Family;
use kiln_kernels::elementwise::{self as ew, CastElem, ElementwiseKernel, ElementwiseOp};

use super::{CudaDevice, CudaStorage, Elem, dispatch_half, launch_error, operand};
use crate::cpu::binary::BinaryOp;
use crate::{DType, Error, Result, Tensor};

/// The function of `op` for storage type `T`.
fn func<T: kiln_kernels::launch::KernelElem>(
    dev: &CudaDevice,
    name: &'static str,
    op: ElementwiseOp,
) -> Result<cudarc::driver::CudaFunction> {
    dev.function(name, Family::Elementwise, &ElementwiseKernel::Op { op, dtype: T::DTYPE }.entry())
}

/// GELU (erf form), element-wise.
pub(crate) fn gelu(x: &CudaStorage, shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "gelu";
    let dev = x.device();
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let f = func::<T>(dev, OP, ElementwiseOp::Gelu)?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, x.len(), OP)?;
        ew::launch_gelu::<T>(dev.stream(), &f, &x.view(), &mut y.view_mut()).map_err(launch_error(
            OP,
            T::DTYPE,
            dev.device(),
        ))?;
        Tensor::from_cuda_storage(y, shape)
    })
}

/// SiLU, element-wise.
pub(crate) fn silu(x: &CudaStorage, shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "silu";
    let dev = x.device();
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let f = func::<T>(dev, OP, ElementwiseOp::Silu)?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, x.len(), OP)?;
        ew::launch_silu::<T>(dev.stream(), &f, &x.view(), &mut y.view_mut()).map_err(launch_error(
            OP,
            T::DTYPE,
            dev.device(),
        ))?;
        Tensor::from_cuda_storage(y, shape)
    })
}

/// GEGLU: `x [R, 2N] -> hidden * gelu(gate)` `[R, N]`.
pub(crate) fn geglu(x: &CudaStorage, n: usize, shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "geglu";
    let dev = x.device();
    let rows = x.len().checked_div(2 * n).unwrap_or(0);
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let f = func::<T>(dev, OP, ElementwiseOp::Geglu)?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, rows * n, OP)?;
        ew::launch_geglu::<T>(dev.stream(), &f, &x.view(), &mut y.view_mut(), rows, n)
            .map_err(launch_error(OP, T::DTYPE, dev.device()))?;
        Tensor::from_cuda_storage(y, shape)
    })
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
    let dev = a.device();
    let b = operand(op, rhs)?;
    let ew_op = match bop {
        BinaryOp::Add => ElementwiseOp::Add,
        BinaryOp::Mul => ElementwiseOp::Mul,
    };
    dispatch_half!(op, a.dtype(), dev.device(), |T| {
        let f = func::<T>(dev, op, ew_op)?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, shape.iter().product(), op)?;
        ew::launch_binary::<T>(
            dev.stream(),
            &f,
            (&a.view(), a_dims),
            (&b.view(), rhs.dims()),
            &mut y.view_mut(),
        )
        .map_err(launch_error(op, T::DTYPE, dev.device()))?;
        Tensor::from_cuda_storage(y, shape)
    })
}

/// `x * mul + add`, element-wise.
pub(crate) fn affine(x: &CudaStorage, mul: f32, add: f32, shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "affine";
    let dev = x.device();
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let f = func::<T>(dev, OP, ElementwiseOp::Affine)?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, x.len(), OP)?;
        ew::launch_affine::<T>(dev.stream(), &f, &x.view(), &mut y.view_mut(), mul, add)
            .map_err(launch_error(OP, T::DTYPE, dev.device()))?;
        Tensor::from_cuda_storage(y, shape)
    })
}

/// Converts `x` to `dtype` (which differs from its own) into a tensor of `shape`, rounding to
/// nearest even; works between all of f32, f16 and bf16.
pub(crate) fn cast(x: &CudaStorage, dtype: DType, shape: &[usize]) -> Result<Tensor> {
    match (x.dtype(), dtype) {
        (DType::F32, DType::F16) => cast_as::<f32, f16>(x, shape),
        (DType::F32, DType::BF16) => cast_as::<f32, bf16>(x, shape),
        (DType::F16, DType::F32) => cast_as::<f16, f32>(x, shape),
        (DType::F16, DType::BF16) => cast_as::<f16, bf16>(x, shape),
        (DType::BF16, DType::F32) => cast_as::<bf16, f32>(x, shape),
        (DType::BF16, DType::F16) => cast_as::<bf16, f16>(x, shape),
        (from, to) => Err(Error::unsupported(
            "to_dtype",
            from,
            x.device().device(),
            format!("no cast kernel from {from} to {to} (same dtype)"),
        )),
    }
}

fn cast_as<S: Elem + CastElem, D: Elem + CastElem>(x: &CudaStorage, shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "to_dtype";
    let dev = x.device();
    let kernel = ElementwiseKernel::Cast { from: S::CAST, to: D::CAST };
    let f = dev.function(OP, Family::Elementwise, &kernel.entry())?;
    let mut y = CudaStorage::alloc(dev, D::DTYPE, x.len(), OP)?;
    ew::launch_cast::<S, D>(dev.stream(), &f, &x.view(), &mut y.view_mut()).map_err(launch_error(
        OP,
        S::DTYPE,
        dev.device(),
    ))?;
    Tensor::from_cuda_storage(y, shape)
}

/// `[N, H, W, C] -> [N, 2H, 2W, C]` nearest upsampling.
pub(crate) fn upsample_nearest2x(
    x: &CudaStorage,
    (n, h, w, c): (usize, usize, usize, usize),
) -> Result<Tensor> {
    const OP: &str = "upsample_nearest2x";
    let dev = x.device();
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let f = func::<T>(dev, OP, ElementwiseOp::UpsampleNearest2x)?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, 4 * x.len(), OP)?;
        ew::launch_upsample_nearest2x::<T>(dev.stream(), &f, &x.view(), &mut y.view_mut(), [n, h, w, c])
            .map_err(launch_error(OP, T::DTYPE, dev.device()))?;
        Tensor::from_cuda_storage(y, &[n, 2 * h, 2 * w, c]) // [N, 2H, 2W, C]
    })
}

/// Permutes the dimensions of `x` (shape `dims`) by `perm` into `shape`.
pub(crate) fn permute(x: &CudaStorage, dims: &[usize], perm: &[usize], shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "permute";
    let dev = x.device();
    let plan =
        ew::PermutePlan::new(dims, perm).map_err(|m| Error::unsupported(OP, x.dtype(), dev.device(), m))?;
    let width = ew::PermuteWidth::for_size(x.dtype().size_in_bytes()).ok_or_else(|| {
        Error::unsupported(OP, x.dtype(), dev.device(), "no permute kernel for this element size")
    })?;
    let f = dev.function(OP, Family::Elementwise, &ew::permute_kernel(&plan, width).entry())?;
    let mut y = CudaStorage::alloc(dev, x.dtype(), x.len(), OP)?;
    let launched = match x.dtype() {
        DType::F32 => ew::launch_permute(dev.stream(), &f, &x.view::<f32>(), &mut y.view_mut::<f32>(), &plan),
        DType::F16 => ew::launch_permute(dev.stream(), &f, &x.view::<f16>(), &mut y.view_mut::<f16>(), &plan),
        DType::BF16 => {
            ew::launch_permute(dev.stream(), &f, &x.view::<bf16>(), &mut y.view_mut::<bf16>(), &plan)
        }
    };
    launched.map_err(launch_error(OP, x.dtype(), dev.device()))?;
    Tensor::from_cuda_storage(y, shape)
}
