//! The tensor type: a shape, and contiguous row-major storage on one device.

use std::fmt;
use std::sync::Arc;

use crate::{CpuStorage, DType, Device, Error, Result};

/// Where a tensor's elements live.
#[derive(Clone, Debug)]
pub enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
}

impl Storage {
    /// The device holding the elements.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
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
        match self.storage.as_ref() {
            Storage::Cpu(s) => Tensor::from_cpu_storage(s.to_dtype(dtype), &self.shape),
        }
    }

    /// Moves the tensor to `device` (shares the buffer when it is already there).
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        match device {
            // Every storage is on the host until the CUDA backend lands.
            Device::Cpu => Ok(self.clone()),
            Device::Cuda(ordinal) => Device::cuda(ordinal).map(|_| self.clone()),
        }
    }

    /// Copies the elements to the host as f32, in row-major order.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        match self.storage.as_ref() {
            Storage::Cpu(s) => Ok(s.as_f32().into_owned()),
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
