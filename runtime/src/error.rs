//! The runtime's error type: every variant names the op and what did not fit.

use crate::{DType, Device};

/// Result alias for the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in kiln-runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Operand shapes do not fit the op.
    #[error("{op}: {msg}")]
    Shape {
        /// The op that refused its operands.
        op: &'static str,
        /// What does not fit, with the shapes involved.
        msg: String,
    },
    /// A tensor had a different number of dimensions than the op expects.
    #[error("{op}: expected a rank-{expected} tensor, got shape {shape:?}")]
    Rank {
        /// The op.
        op: &'static str,
        /// The rank it expects.
        expected: usize,
        /// The shape it got.
        shape: Vec<usize>,
    },
    /// A buffer's length does not match the shape it was given.
    #[error("{len} elements cannot have shape {shape:?} ({} expected)", shape.iter().product::<usize>())]
    ElementCount {
        /// The requested shape.
        shape: Vec<usize>,
        /// The number of elements supplied.
        len: usize,
    },
    /// Operands of one op are stored in different dtypes.
    #[error("{op}: operands have different dtypes ({lhs} and {rhs})")]
    DTypeMismatch {
        /// The op.
        op: &'static str,
        /// The first operand's dtype.
        lhs: DType,
        /// The offending operand's dtype.
        rhs: DType,
    },
    /// Operands of one op live on different devices.
    #[error("{op}: operands live on different devices ({lhs} and {rhs})")]
    DeviceMismatch {
        /// The op.
        op: &'static str,
        /// The first operand's device.
        lhs: Device,
        /// The offending operand's device.
        rhs: Device,
    },
    /// kiln was built without the `cuda` feature.
    #[error("this build of kiln has no CUDA backend (rebuild with `--features cuda`)")]
    CudaNotBuilt,
    /// The CUDA device cannot be used on this machine.
    #[error("CUDA device {ordinal} is unavailable: {reason}")]
    CudaUnavailable {
        /// The device ordinal asked for.
        ordinal: usize,
        /// Why: no driver, no such device, ...
        reason: String,
    },
    /// A device allocation failed, even after the caching allocator released its cache.
    #[error(
        "{device}: out of memory allocating {bytes} bytes for {op} (the allocator's cache was freed and the allocation retried once)"
    )]
    OutOfMemory {
        /// The device.
        device: Device,
        /// The op (or `upload`) that asked.
        op: &'static str,
        /// The size asked for, in bytes.
        bytes: usize,
    },
    /// The op has no implementation for this dtype on this device (e.g. f32 on CUDA, which stores
    /// f32 for uploads, downloads and casts but has bf16/f16 kernels only).
    #[error("{op} is not supported for {dtype} on {device}: {reason}")]
    Unsupported {
        /// The op.
        op: &'static str,
        /// The operands' dtype.
        dtype: DType,
        /// The operands' device.
        device: Device,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A CUDA driver or cuBLASLt call failed while running an op.
    #[error("{op} on {device}: {message}")]
    Cuda {
        /// The op (or `upload`, `download`).
        op: &'static str,
        /// The device.
        device: Device,
        /// The failing call and the driver's error.
        message: String,
    },
    /// kiln-kernels could not compile or load the kernels an op needs on the device.
    #[error("{op} on {device}: the CUDA kernels are unavailable: {source}")]
    Kernels {
        /// The op that needed them.
        op: &'static str,
        /// The device.
        device: Device,
        /// kiln-kernels' error (NVRTC or the CUDA headers missing, a compile error with NVRTC's
        /// log, PTX the driver rejects, a missing entry point).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A checkpoint could not be read or understood.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}

impl Error {
    /// Builds an [`Error::Shape`].
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }

    /// Builds an [`Error::Unsupported`].
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn unsupported(
        op: &'static str,
        dtype: DType,
        device: Device,
        reason: impl Into<String>,
    ) -> Self {
        Error::Unsupported { op, dtype, device, reason: reason.into() }
    }
}
