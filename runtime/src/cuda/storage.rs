//! [`CudaStorage`]: a tensor's elements in device memory, and host <-> device copies.

use std::fmt;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DeviceRepr, ValidAsZeroBits};
use half::{bf16, f16};

use super::alloc::AllocError;
use super::{CudaDevice, driver_error};
use crate::{CpuStorage, DType, Device, Error, Result, Storage, Tensor};

/// A storage element type on the GPU.
pub(crate) trait Elem: DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + 'static {
    /// The matching [`DType`].
    const DTYPE: DType;
    /// Wraps host elements as [`CpuStorage`].
    fn into_cpu(v: Vec<Self>) -> CpuStorage;
}

impl Elem for f32 {
    const DTYPE: DType = DType::F32;
    fn into_cpu(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
}

impl Elem for f16 {
    const DTYPE: DType = DType::F16;
    fn into_cpu(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F16(v)
    }
}

impl Elem for bf16 {
    const DTYPE: DType = DType::BF16;
    fn into_cpu(v: Vec<Self>) -> CpuStorage {
        CpuStorage::BF16(v)
    }
}

/// A contiguous device buffer of `len` elements of one dtype on one GPU.
///
/// The buffer is raw bytes from the device's allocator, viewed as the element type by the ops.
/// Dropping the storage returns the buffer to the allocator (activations) or frees it
/// (weights, allocated at their exact size); either is ordered on the device's stream after
/// any work still using it.
pub struct CudaStorage {
    /// `Some` until dropped.
    buf: Option<CudaSlice<u8>>,
    len: usize,
    dtype: DType,
    /// From a size bucket (activations) rather than an exact-size allocation (weights).
    bucketed: bool,
    dev: Arc<CudaDevice>,
}

impl fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaStorage({} x {} on cuda:{})", self.len, self.dtype, self.dev.ordinal)
    }
}

impl Drop for CudaStorage {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            if self.bucketed {
                self.dev.alloc.release_bucketed(buf)
            } else {
                self.dev.alloc.release_exact(buf)
            }
        }
    }
}

impl CudaStorage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The GPU holding the buffer.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    fn buf(&self) -> &CudaSlice<u8> {
        self.buf.as_ref().expect("a live CudaStorage holds its buffer")
    }

    /// The elements as `T`, which must be the storage's dtype.
    pub(crate) fn view<T: Elem>(&self) -> CudaView<'_, T> {
        assert_eq!(T::DTYPE, self.dtype, "CudaStorage viewed as the wrong dtype");
        // SAFETY: the buffer holds at least `len` elements of `dtype` (checked at allocation),
        // and `T` is that dtype.
        unsafe { self.buf().transmute::<T>(self.len) }.expect("buffer holds len elements")
    }

    /// The elements as `T` for writing, which must be the storage's dtype.
    pub(crate) fn view_mut<T: Elem>(&mut self) -> CudaViewMut<'_, T> {
        assert_eq!(T::DTYPE, self.dtype, "CudaStorage viewed as the wrong dtype");
        let len = self.len;
        let buf = self.buf.as_mut().expect("a live CudaStorage holds its buffer");
        // SAFETY: as in `view`.
        unsafe { buf.transmute_mut::<T>(len) }.expect("buffer holds len elements")
    }

    /// A fresh op output of `len` elements of `dtype` from the caching allocator; its contents
    /// are undefined (or `0xFF` bytes, NaN, when the device poisons outputs). Enqueues nothing
    /// unless poisoning.
    pub(crate) fn alloc(dev: &Arc<CudaDevice>, dtype: DType, len: usize, op: &'static str) -> Result<Self> {
        let bytes = byte_size(dtype, len, dev.device(), op)?;
        let buf = dev.alloc.alloc_bucketed(bytes).map_err(|e| alloc_error(dev, op, bytes, e))?;
        let mut s = CudaStorage { buf: Some(buf), len, dtype, bucketed: true, dev: dev.clone() };
        if dev.poison() {
            s.fill_bytes(0xFF, op)?;
        }
        Ok(s)
    }

    /// Sets every byte of the elements to `value` (stream-ordered).
    pub(crate) fn fill_bytes(&mut self, value: u8, op: &'static str) -> Result<()> {
        let bytes = self.len * self.dtype.size_in_bytes();
        if bytes == 0 {
            return Ok(());
        }
        let dev = self.dev.clone();
        // The raw driver call needs the context current on this thread, which a thread that
        // has never touched the device lacks (found on the software GPU).
        dev.bind(op)?;
        let ptr = self.raw_ptr();
        // SAFETY: `ptr` is a live allocation of at least `bytes` bytes, written in stream order.
        unsafe { cudarc::driver::result::memset_d8_async(ptr, value, bytes, dev.stream.cu_stream()) }
            .map_err(|e| driver_error(op, dev.device(), "cuMemsetD8Async", e))
    }

    /// The device address of the first element (for raw driver calls such as 2-d copies).
    pub(crate) fn raw_ptr(&self) -> cudarc::driver::sys::CUdeviceptr {
        use cudarc::driver::DevicePtr;
        let (ptr, _sync) = self.buf().device_ptr(&self.dev.stream);
        ptr
    }

    /// Copies host elements to `dev`, into an exact-size allocation (weights are uploaded once
    /// and kept). Waits for the copy (cudarc synchronises copies from pageable memory).
    pub(crate) fn upload(dev: &Arc<CudaDevice>, host: &CpuStorage) -> Result<Self> {
        dev.bind("upload")?;
        match host {
            CpuStorage::F32(v) => Self::upload_slice(dev, v),
            CpuStorage::F16(v) => Self::upload_slice(dev, v),
            CpuStorage::BF16(v) => Self::upload_slice(dev, v),
        }
    }

    fn upload_slice<T: Elem>(dev: &Arc<CudaDevice>, v: &[T]) -> Result<Self> {
        const OP: &str = "upload";
        let bytes = byte_size(T::DTYPE, v.len(), dev.device(), OP)?;
        let buf = dev.alloc.alloc_exact(bytes).map_err(|e| alloc_error(dev, OP, bytes, e))?;
        let mut s =
            CudaStorage { buf: Some(buf), len: v.len(), dtype: T::DTYPE, bucketed: false, dev: dev.clone() };
        if !v.is_empty() {
            dev.stream
                .memcpy_htod(v, &mut s.view_mut::<T>())
                .map_err(|e| driver_error(OP, dev.device(), "cuMemcpyHtoDAsync", e))?;
        }
        Ok(s)
    }

    /// Copies the elements to the host, waiting for all work enqueued before.
    pub(crate) fn download(&self) -> Result<CpuStorage> {
        self.dev.bind("download")?;
        match self.dtype {
            DType::F32 => self.download_as::<f32>(),
            DType::F16 => self.download_as::<f16>(),
            DType::BF16 => self.download_as::<bf16>(),
        }
    }

    fn download_as<T: Elem>(&self) -> Result<CpuStorage> {
        if self.len == 0 {
            return Ok(T::into_cpu(Vec::new()));
        }
        let v = self
            .dev
            .stream
            .clone_dtoh(&self.view::<T>())
            .map_err(|e| driver_error("download", self.dev.device(), "cuMemcpyDtoHAsync", e))?;
        Ok(T::into_cpu(v))
    }
}

/// Bytes of `len` elements of `dtype`, or a typed error when that overflows.
fn byte_size(dtype: DType, len: usize, device: Device, op: &'static str) -> Result<usize> {
    len.checked_mul(dtype.size_in_bytes()).ok_or(Error::OutOfMemory { device, op, bytes: usize::MAX })
}

fn alloc_error(dev: &CudaDevice, op: &'static str, bytes: usize, e: AllocError) -> Error {
    match e {
        AllocError::OutOfMemory => Error::OutOfMemory { device: dev.device(), op, bytes },
        AllocError::Driver(e) => driver_error(op, dev.device(), "cuMemAllocAsync", e),
    }
}

/// The device storage of an operand that [`crate::ops`] has already matched to the first
/// operand's device.
pub(crate) fn operand<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a CudaStorage> {
    match t.storage() {
        Storage::Cuda(s) => Ok(s),
        other => Err(Error::DeviceMismatch { op, lhs: Device::Cuda(0), rhs: other.device() }),
    }
}
