//! Layout ops on the GPU. Narrowing and concatenation are strided block copies, done by the
//! driver's 2-d copy engine (`cuMemcpy2DAsync`) for every dtype with no kernel; upsampling and
//! permutation need the elementwise family's kernels.
//!
//! A 2-d copy moves `height` rows of `width` bytes from `src + src_off + r * src_pitch` to
//! `dst + dst_off + r * dst_pitch`. Viewing a tensor as `[outer, size, inner]` around the
//! dimension `dim`, one row is the `size * inner` block that follows one outer index.

use cudarc::driver::sys::{CUDA_MEMCPY2D, CUmemorytype};

use super::{CudaDevice, CudaStorage, driver_error, elementwise, operand};
use crate::{Result, Tensor};

/// `[N, H, W, C] -> [N, 2H, 2W, C]` nearest upsampling.
pub(crate) fn upsample_nearest2x(x: &CudaStorage, dims: (usize, usize, usize, usize)) -> Result<Tensor> {
    elementwise::upsample_nearest2x(x, dims)
}

/// Permutes the dimensions of `x` (shape `dims`) by `perm` into `shape`.
pub(crate) fn permute(x: &CudaStorage, dims: &[usize], perm: &[usize], shape: &[usize]) -> Result<Tensor> {
    elementwise::permute(x, dims, perm, shape)
}

/// The `len` entries from `start` along the middle axis of `x` viewed as `[outer, size, inner]`.
pub(crate) fn narrow(
    x: &CudaStorage,
    (outer, size, inner): (usize, usize, usize),
    start: usize,
    len: usize,
    shape: &[usize],
) -> Result<Tensor> {
    const OP: &str = "narrow";
    let dev = x.device();
    let es = x.dtype().size_in_bytes();
    let mut out = CudaStorage::alloc(dev, x.dtype(), outer * len * inner, OP)?;
    let row = len * inner * es;
    let copy =
        Copy2d { src_off: start * inner * es, src_pitch: size * inner * es, dst_off: 0, dst_pitch: row };
    copy_2d(dev, OP, x, &mut out, copy, row, outer)?;
    Tensor::from_cuda_storage(out, shape)
}

/// Concatenates `tensors` (each `[outer, blocks[i]]` in elements) along the block axis.
pub(crate) fn concat(tensors: &[&Tensor], outer: usize, blocks: &[usize], shape: &[usize]) -> Result<Tensor> {
    const OP: &str = "concat";
    let xs = tensors.iter().map(|t| operand(OP, t)).collect::<Result<Vec<&CudaStorage>>>()?;
    let first = xs[0];
    let dev = first.device();
    let es = first.dtype().size_in_bytes();
    let total: usize = blocks.iter().sum();
    let mut out = CudaStorage::alloc(dev, first.dtype(), outer * total, OP)?;
    let mut offset = 0;
    for (x, &block) in xs.iter().zip(blocks) {
        let copy = Copy2d { src_off: 0, src_pitch: block * es, dst_off: offset * es, dst_pitch: total * es };
        copy_2d(dev, OP, x, &mut out, copy, block * es, outer)?;
        offset += block;
    }
    Tensor::from_cuda_storage(out, shape)
}

/// Byte offsets and pitches of one strided copy.
#[derive(Clone, Copy)]
struct Copy2d {
    src_off: usize,
    src_pitch: usize,
    dst_off: usize,
    dst_pitch: usize,
}

/// Enqueues `height` rows of `width` bytes from `src` to `dst` (nothing for an empty copy).
fn copy_2d(
    dev: &CudaDevice,
    op: &'static str,
    src: &CudaStorage,
    dst: &mut CudaStorage,
    c: Copy2d,
    width: usize,
    height: usize,
) -> Result<()> {
    if width == 0 || height == 0 {
        return Ok(());
    }
    dev.bind(op)?;
    let (s, d) = (src.raw_ptr(), dst.raw_ptr());
    let stream = dev.stream().cu_stream();
    if height == 1 || (c.src_pitch == width && c.dst_pitch == width) {
        // One contiguous run: a plain copy (also avoids the 2-d copy's pitch limit).
        // SAFETY: the ranges lie inside both buffers (the ops validated the shapes).
        return unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                d + (c.dst_off as u64),
                s + (c.src_off as u64),
                width * height,
                stream,
            )
        }
        .map_err(|e| driver_error(op, dev.device(), "cuMemcpyDtoDAsync", e));
    }
    let params = CUDA_MEMCPY2D {
        srcXInBytes: c.src_off,
        srcY: 0,
        srcMemoryType: CUmemorytype::CU_MEMORYTYPE_DEVICE,
        srcHost: std::ptr::null(),
        srcDevice: s,
        srcArray: std::ptr::null_mut(),
        srcPitch: c.src_pitch,
        dstXInBytes: c.dst_off,
        dstY: 0,
        dstMemoryType: CUmemorytype::CU_MEMORYTYPE_DEVICE,
        dstHost: std::ptr::null_mut(),
        dstDevice: d,
        dstArray: std::ptr::null_mut(),
        dstPitch: c.dst_pitch,
        WidthInBytes: width,
        Height: height,
    };
    // SAFETY: `height` rows of `width` bytes at the given offsets and pitches lie inside both
    // buffers: `src_off + width <= src_pitch` and `dst_off + width <= dst_pitch` by construction.
    unsafe { cudarc::driver::sys::cuMemcpy2DAsync_v2(&params, stream) }
        .result()
        .map_err(|e| driver_error(op, dev.device(), "cuMemcpy2DAsync", e))
}
