//! What the typed launchers share: their error type, the element types they take, and small
//! helpers for grids and alignment.

use cudarc::driver::{CudaStream, DevicePtr, DeviceRepr, DriverError, ValidAsZeroBits};

use crate::KernelDType;

/// A launcher's failure: dimensions the kernel cannot handle (nothing was launched), or the
/// driver's error.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The dimensions or buffers do not fit the kernel; nothing was launched.
    #[error("{kernel}: {message}")]
    Unsupported {
        /// The entry point (or op) refused.
        kernel: &'static str,
        /// What is wrong, with the dimensions.
        message: String,
    },
    /// The CUDA driver failed the launch.
    #[error("{kernel}: CUDA driver error: {source}")]
    Driver {
        /// The entry point (or op) launched.
        kernel: &'static str,
        /// The driver's error.
        source: DriverError,
    },
}

impl LaunchError {
    /// An [`LaunchError::Unsupported`] for `kernel`.
    pub fn unsupported(kernel: &'static str, message: impl Into<String>) -> Self {
        LaunchError::Unsupported { kernel, message: message.into() }
    }

    /// A closure wrapping a [`DriverError`] for `kernel`, for `map_err`.
    pub fn driver(kernel: &'static str) -> impl Fn(DriverError) -> Self {
        move |source| LaunchError::Driver { kernel, source }
    }
}

/// A storage type kernels are instantiated for: `half::bf16` or `half::f16`.
pub trait KernelElem: DeviceRepr + ValidAsZeroBits + Copy + Unpin + 'static {
    /// The matching [`KernelDType`] (and so the entry-point suffix).
    const DTYPE: KernelDType;
}

impl KernelElem for half::bf16 {
    const DTYPE: KernelDType = KernelDType::BF16;
}

impl KernelElem for half::f16 {
    const DTYPE: KernelDType = KernelDType::F16;
}

/// Checks that a buffer holds exactly `expected` elements.
pub(crate) fn check_len(
    kernel: &'static str,
    what: &str,
    len: usize,
    expected: usize,
) -> Result<(), LaunchError> {
    if len == expected {
        Ok(())
    } else {
        Err(LaunchError::unsupported(kernel, format!("{what} has {len} elements, expected {expected}")))
    }
}

/// Whether `buf`'s device address is a multiple of 16 bytes (16-byte vector accesses).
pub(crate) fn aligned16<T>(stream: &CudaStream, buf: &impl DevicePtr<T>) -> bool {
    let (ptr, _sync) = buf.device_ptr(stream);
    ptr % 16 == 0
}

/// Blocks of `threads` threads covering `work` items, as a grid x dimension.
pub(crate) fn blocks_for(kernel: &'static str, work: usize, threads: usize) -> Result<u32, LaunchError> {
    u32::try_from(work.div_ceil(threads).max(1))
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| LaunchError::unsupported(kernel, format!("{work} work items exceed the grid limit")))
}

/// `v` as a kernel `int`, or an error naming `what`.
pub(crate) fn to_i32(kernel: &'static str, what: &str, v: usize) -> Result<i32, LaunchError> {
    i32::try_from(v).map_err(|_| {
        LaunchError::unsupported(kernel, format!("{what} = {v} does not fit the kernel's 32-bit index"))
    })
}
