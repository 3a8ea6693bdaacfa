//! 2-d convolution on the GPU through kiln-kernels' implicit-GEMM conv kernels (NHWC
//! activations, OHWI weights, bias in the epilogue). [`ConvKernel::select`] picks the tiled
//! `cp.async` variants when `Cin % 8 == 0` and `Cout` is even, the generic one otherwise.

use kiln_kernels::Family;
use kiln_kernels::conv::{ConvDims, ConvError, ConvKernel, launch_conv2d};

use super::{CudaStorage, Elem, dispatch_half, driver_error, kernel_dtype, operand};
use crate::cpu::conv::ConvGeometry;
use crate::{DType, Device, Error, Result, Tensor};

/// `x [N, H, W, Cin]` conv `weight [Cout, kh, kw, Cin]` + `bias [Cout]` -> `[N, Ho, Wo, Cout]`.
pub(crate) fn conv2d(
    x: &CudaStorage,
    weight: &Tensor,
    bias: Option<&Tensor>,
    g: ConvGeometry,
    shape: &[usize],
) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let dev = x.device();
    let w = operand(OP, weight)?;
    let b = bias.map(|b| operand(OP, b)).transpose()?;
    let ConvGeometry { n, h, w: width, cin, cout, kh, kw, stride, pad, .. } = g;
    let dims = ConvDims { n, h, w: width, cin, cout, kh, kw, stride, pad };
    dispatch_half!(OP, x.dtype(), dev.device(), |T| {
        let kernel = ConvKernel::select(kernel_dtype::<T>(), &dims);
        let f = dev.function(OP, Family::Conv, &kernel.entry())?;
        let mut y = CudaStorage::alloc(dev, T::DTYPE, shape.iter().product(), OP)?;
        let bias_view = b.map(|b| b.view::<T>());
        launch_conv2d::<T>(
            dev.stream(),
            &f,
            kernel,
            &x.view(),
            &w.view(),
            bias_view.as_ref(),
            None,
            &mut y.view_mut(),
            dims,
        )
        .map_err(|e| conv_error(e, T::DTYPE, dev.device()))?;
        Tensor::from_cuda_storage(y, shape) // [N, Ho, Wo, Cout]
    })
}

fn conv_error(e: ConvError, dtype: DType, device: Device) -> Error {
    match e {
        ConvError::Driver(source) => driver_error("conv2d", device, "conv2d launch", source),
        e => Error::unsupported("conv2d", dtype, device, e.to_string()),
    }
}
