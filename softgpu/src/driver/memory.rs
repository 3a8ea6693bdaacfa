//! Allocation, copies and sets: `cuMemAlloc*`, `cuMemFree*`, `cuMemcpy*`, `cuMemset*`.
//!
//! Allocations come from the device's [`crate::memory::DeviceMemory`] (256-byte aligned,
//! never reused, so a stale pointer is always caught). `cuMemAllocAsync`/`cuMemFreeAsync`
//! allocate and free at once, even on a capturing stream (they are not recorded: a graph that
//! uses memory freed during its capture faults with "use after free" when replayed).
//! Copies and sets go through the stream (`stream::submit`): they run at once, or are
//! recorded while the stream captures; the synchronous forms use the default stream. A range
//! outside an allocation is `CUDA_ERROR_INVALID_VALUE` naming the address and allocation.

use std::ffi::{c_uchar, c_uint, c_void};

use super::errors::{CUresult, Failure, bail, guard, put};
use super::init::context;
use super::ops::{Copy2D, End, Op, Place};
use super::stream::{stream_of, submit};
use super::{CUdeviceptr, CUstream};
use crate::memory::MemoryError;

impl From<MemoryError> for Failure {
    fn from(e: MemoryError) -> Self {
        let code = match e {
            MemoryError::OutOfMemory { .. } => CUresult::CUDA_ERROR_OUT_OF_MEMORY,
            _ => CUresult::CUDA_ERROR_INVALID_VALUE,
        };
        Failure::new(code, e.to_string())
    }
}

fn alloc(dptr: *mut CUdeviceptr, bytesize: usize) -> Result<(), Failure> {
    let device = context()?;
    if dptr.is_null() {
        bail!(CUDA_ERROR_INVALID_VALUE, "dptr is null");
    }
    let addr = device.memory.alloc(bytesize as u64)?;
    put(dptr, addr, "dptr")
}

fn free(dptr: CUdeviceptr) -> Result<(), Failure> {
    let device = context()?;
    device.memory.free(dptr).map_err(|e| Failure::invalid(format!("cannot free: {e}")))
}

/// # Safety
/// `dptr` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytesize: usize) -> CUresult {
    guard("cuMemAlloc_v2", || {
        if bytesize == 0 {
            bail!(CUDA_ERROR_INVALID_VALUE, "bytesize is 0");
        }
        alloc(dptr, bytesize)
    })
}

/// Allocates at once; a size of 0 gets a fresh 1-byte allocation (cudarc makes empty slices
/// this way and frees them later).
///
/// # Safety
/// `dptr` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    hStream: CUstream,
) -> CUresult {
    guard("cuMemAllocAsync", || {
        context()?;
        stream_of(hStream)?;
        alloc(dptr, bytesize)
    })
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    guard("cuMemFree_v2", || free(dptr))
}

/// Frees at once (the stream's earlier work has already completed).
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFreeAsync(dptr: CUdeviceptr, hStream: CUstream) -> CUresult {
    guard("cuMemFreeAsync", || {
        context()?;
        stream_of(hStream)?;
        free(dptr)
    })
}

/// # Safety
/// `srcHost` must point at `ByteCount` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(
    dstDevice: CUdeviceptr,
    srcHost: *const c_void,
    ByteCount: usize,
) -> CUresult {
    guard("cuMemcpyHtoD_v2", || {
        submit(std::ptr::null_mut(), Op::HtoD { dst: dstDevice, src: srcHost as usize, len: ByteCount })
    })
}

/// # Safety
/// `srcHost` must point at `ByteCount` readable bytes (until the copy runs, if captured).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(
    dstDevice: CUdeviceptr,
    srcHost: *const c_void,
    ByteCount: usize,
    hStream: CUstream,
) -> CUresult {
    guard("cuMemcpyHtoDAsync_v2", || {
        submit(hStream, Op::HtoD { dst: dstDevice, src: srcHost as usize, len: ByteCount })
    })
}

/// # Safety
/// `dstHost` must point at `ByteCount` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(
    dstHost: *mut c_void,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
) -> CUresult {
    guard("cuMemcpyDtoH_v2", || {
        submit(std::ptr::null_mut(), Op::DtoH { dst: dstHost as usize, src: srcDevice, len: ByteCount })
    })
}

/// Complete on return: the bytes are in `dstHost` when this returns (unless captured).
///
/// # Safety
/// `dstHost` must point at `ByteCount` writable bytes (until the copy runs, if captured).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(
    dstHost: *mut c_void,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
    hStream: CUstream,
) -> CUresult {
    guard("cuMemcpyDtoHAsync_v2", || {
        submit(hStream, Op::DtoH { dst: dstHost as usize, src: srcDevice, len: ByteCount })
    })
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyDtoD_v2(
    dstDevice: CUdeviceptr,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
) -> CUresult {
    guard("cuMemcpyDtoD_v2", || {
        submit(std::ptr::null_mut(), Op::DtoD { dst: dstDevice, src: srcDevice, len: ByteCount })
    })
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyDtoDAsync_v2(
    dstDevice: CUdeviceptr,
    srcDevice: CUdeviceptr,
    ByteCount: usize,
    hStream: CUstream,
) -> CUresult {
    guard("cuMemcpyDtoDAsync_v2", || {
        submit(hStream, Op::DtoD { dst: dstDevice, src: srcDevice, len: ByteCount })
    })
}

/// `CU_MEMORYTYPE_*`.
const HOST: c_uint = 1;
const DEVICE: c_uint = 2;
const ARRAY: c_uint = 3;
const UNIFIED: c_uint = 4;

/// The C `CUDA_MEMCPY2D` (`CUDA_MEMCPY2D_v2`) struct.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CUDA_MEMCPY2D {
    pub srcXInBytes: usize,
    pub srcY: usize,
    pub srcMemoryType: c_uint,
    pub srcHost: *const c_void,
    pub srcDevice: CUdeviceptr,
    pub srcArray: *mut c_void,
    pub srcPitch: usize,
    pub dstXInBytes: usize,
    pub dstY: usize,
    pub dstMemoryType: c_uint,
    pub dstHost: *mut c_void,
    pub dstDevice: CUdeviceptr,
    pub dstArray: *mut c_void,
    pub dstPitch: usize,
    pub WidthInBytes: usize,
    pub Height: usize,
}

impl CUDA_MEMCPY2D {
    /// A zeroed descriptor (memory types unset).
    pub fn zeroed() -> Self {
        // SAFETY: all fields are integers or raw pointers, for which zero is valid.
        unsafe { std::mem::zeroed() }
    }
}

/// Where one end of a 2D copy is: host memory, device memory, or (unified) whichever the
/// address falls in.
fn place(kind: c_uint, host: usize, dev: CUdeviceptr, what: &str) -> Result<Place, Failure> {
    let device = context()?;
    Ok(match kind {
        HOST => Place::Host(host),
        DEVICE => Place::Device(dev),
        UNIFIED if device.memory.find(dev).is_some() => Place::Device(dev),
        UNIFIED => Place::Host(dev as usize),
        ARRAY => bail!(CUDA_ERROR_NOT_SUPPORTED, "{what}: CUDA arrays are not supported"),
        other => bail!(CUDA_ERROR_INVALID_VALUE, "{what}: memory type {other} is not a CUmemorytype"),
    })
}

fn copy_2d(pCopy: *const CUDA_MEMCPY2D, stream: CUstream) -> Result<(), Failure> {
    context()?;
    if pCopy.is_null() {
        bail!(CUDA_ERROR_INVALID_VALUE, "pCopy is null");
    }
    // SAFETY: non-null, and the caller passes a readable descriptor.
    let c = unsafe { pCopy.read() };
    let src = End {
        place: place(c.srcMemoryType, c.srcHost as usize, c.srcDevice, "2D copy source")?,
        x: c.srcXInBytes,
        y: c.srcY,
        pitch: c.srcPitch,
    };
    let dst = End {
        place: place(c.dstMemoryType, c.dstHost as usize, c.dstDevice, "2D copy destination")?,
        x: c.dstXInBytes,
        y: c.dstY,
        pitch: c.dstPitch,
    };
    submit(stream, Op::Copy2D(Copy2D { src, dst, width: c.WidthInBytes, height: c.Height }))
}

/// A 2D copy between host and/or device memory with pitches.
///
/// # Safety
/// `pCopy` must be null or readable; its host ranges must be valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpy2D_v2(pCopy: *const CUDA_MEMCPY2D) -> CUresult {
    guard("cuMemcpy2D_v2", || copy_2d(pCopy, std::ptr::null_mut()))
}

/// # Safety
/// As [`cuMemcpy2D_v2`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpy2DAsync_v2(pCopy: *const CUDA_MEMCPY2D, hStream: CUstream) -> CUresult {
    guard("cuMemcpy2DAsync_v2", || copy_2d(pCopy, hStream))
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemsetD8_v2(dstDevice: CUdeviceptr, uc: c_uchar, N: usize) -> CUresult {
    guard("cuMemsetD8_v2", || {
        submit(std::ptr::null_mut(), Op::Set { dst: dstDevice, value: uc as u32, width: 1, count: N })
    })
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemsetD8Async(
    dstDevice: CUdeviceptr,
    uc: c_uchar,
    N: usize,
    hStream: CUstream,
) -> CUresult {
    guard("cuMemsetD8Async", || {
        submit(hStream, Op::Set { dst: dstDevice, value: uc as u32, width: 1, count: N })
    })
}

/// Sets `N` 32-bit words; `dstDevice` must be 4-byte aligned.
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemsetD32_v2(dstDevice: CUdeviceptr, ui: c_uint, N: usize) -> CUresult {
    guard("cuMemsetD32_v2", || {
        submit(std::ptr::null_mut(), Op::Set { dst: dstDevice, value: ui, width: 4, count: N })
    })
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemsetD32Async(
    dstDevice: CUdeviceptr,
    ui: c_uint,
    N: usize,
    hStream: CUstream,
) -> CUresult {
    guard("cuMemsetD32Async", || submit(hStream, Op::Set { dst: dstDevice, value: ui, width: 4, count: N }))
}
