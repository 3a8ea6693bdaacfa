//! The tensor type: a shape, and contiguous row-major storage on one device.

use std::fmt;
use std::sync::Arc;

use crate::{CpuStorage, DType, Device, Error, Result};

/// Where a tensor's elements live.
#[derive(Debug)]
pub enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
    /// GPU memory (with the `cuda` feature).
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaStorage),
}

impl Storage {
    /// The device holding the elements.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.device().device(),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.dtype(),
        }
    }
}

/// An n-dimensional array, contiguous and row-major, immutable once built.
///
/// Cloning and [`Tensor::reshape`] share the buffer; ops return new tensors. Activations are
/// NHWC by convention: `[batch, height, width, channels]`, and token sequences `[batch, len, channels]`.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<Storage>,
}

impl Tensor {
    /// Wraps host storage. Fails when the element count does not match `shape`.
    pub fn from_cpu_storage(storage: CpuStorage, shape: &[usize]) -> Result<Tensor> {
        check_len(shape, storage.len())?;
        Ok(Tensor { shape: shape.to_vec(), storage: Arc::new(Storage::Cpu(storage)) })
    }

    /// Wraps device storage. Fails when the element count does not match `shape`.
    #[cfg(feature = "cuda")]
    pub(crate) fn from_cuda_storage(storage: crate::cuda::CudaStorage, shape: &[usize]) -> Result<Tensor> {
        check_len(shape, storage.len())?;
        Ok(Tensor { shape: shape.to_vec(), storage: Arc::new(Storage::Cuda(storage)) })
    }

    /// Builds a tensor of `dtype` on `device` from f32 values (rounded to the dtype).
    pub fn from_f32(data: Vec<f32>, shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        check_len(shape, data.len())?;
        Tensor::from_cpu_storage(CpuStorage::from_f32(data, dtype), shape)?.to_device(device)
    }

    /// A tensor of `value` everywhere.
    pub fn full(value: f32, shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::from_f32(vec![value; shape.iter().product()], shape, dtype, device)
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    /// The device holding the elements.
    pub fn device(&self) -> Device {
        self.storage.device()
    }

    /// The underlying storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The host storage, or `None` for a tensor on another device.
    pub fn cpu_storage(&self) -> Option<&CpuStorage> {
        match self.storage.as_ref() {
            Storage::Cpu(s) => Some(s),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => None,
        }
    }

    /// The device storage, or `None` for a tensor on the host.
    #[cfg(feature = "cuda")]
    pub fn cuda_storage(&self) -> Option<&crate::cuda::CudaStorage> {
        match self.storage.as_ref() {
            Storage::Cuda(s) => Some(s),
            Storage::Cpu(_) => None,
        }
    }

    /// The dimensions of a rank-`N` tensor, for destructuring: `let [b, h, w, c] = x.dims_n::<4>("op")?;`.
    pub fn dims_n<const N: usize>(&self, op: &'static str) -> Result<[usize; N]> {
        self.shape.as_slice().try_into().map_err(|_| Error::Rank {
            op,
            expected: N,
            shape: self.shape.clone(),
        })
    }

    /// The same elements under another shape with the same element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.elem_count() {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {:?} ({} elements) as {shape:?}", self.shape, self.elem_count()),
            ));
        }
        Ok(Tensor { shape: shape.to_vec(), storage: self.storage.clone() })
    }

    /// Converts the elements to `dtype` (shares the buffer when it already is `dtype`).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let _span = crate::profile::span(crate::profile::OpFamily::Convert);
        match self.storage.as_ref() {
            Storage::Cpu(s) => Tensor::from_cpu_storage(s.to_dtype(dtype), &self.shape),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => crate::cuda::elementwise::cast(s, dtype, &self.shape),
        }
    }

    /// Moves the tensor to `device` (shares the buffer when it is already there).
    ///
    /// Host to GPU uploads once into an exact-size buffer: keep the returned tensor (weights
    /// are uploaded at load and stay on the device). GPU to host waits for the GPU's pending
    /// work. Without the `cuda` feature, any CUDA device is [`Error::CudaNotBuilt`].
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        match (self.storage.as_ref(), device) {
            #[cfg(feature = "cuda")]
            (Storage::Cpu(s), Device::Cuda(ordinal)) => {
                let dev = crate::cuda::device(ordinal)?;
                Tensor::from_cuda_storage(crate::cuda::CudaStorage::upload(&dev, s)?, &self.shape)
            }
            #[cfg(feature = "cuda")]
            (Storage::Cuda(s), _) => {
                let host = Tensor::from_cpu_storage(s.download()?, &self.shape)?;
                host.to_device(device)
            }
            #[cfg(not(feature = "cuda"))]
            (Storage::Cpu(_), Device::Cuda(ordinal)) => Device::cuda(ordinal).map(|_| self.clone()),
            (Storage::Cpu(_), Device::Cpu) => Ok(self.clone()),
        }
    }

    /// How many elements are NaN or infinite: one pass on the host, a download first for a GPU
    /// tensor (after waiting for its pending work). For checks once per stage, not per op.
    pub fn count_non_finite(&self) -> Result<usize> {
        match self.storage.as_ref() {
            Storage::Cpu(s) => Ok(s.count_non_finite()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Ok(s.download()?.count_non_finite()),
        }
    }

    /// Copies the elements to the host as f32, in row-major order (for a GPU tensor, after
    /// waiting for the GPU's pending work).
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        match self.storage.as_ref() {
            Storage::Cpu(s) => Ok(s.as_f32().into_owned()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Ok(s.download()?.as_f32().into_owned()),
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({:?}, {}, {})", self.shape, self.dtype(), self.device())
    }
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    if shape.iter().product::<usize>() == len {
        Ok(())
    } else {
        Err(Error::ElementCount { shape: shape.to_vec(), len })
    }
}
