//! Where a tensor lives and where its ops run.

use std::fmt;

use crate::Result;

/// A compute device. Model code is written once against [`crate::Tensor`] and runs on either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The host, through the rayon + `gemm` reference backend.
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal, through kiln-kernels.
    Cuda(usize),
}

impl Device {
    /// Returns the CUDA device `ordinal`, checking that this build and machine can use it.
    ///
    /// Without the `cuda` feature this is [`crate::Error::CudaNotBuilt`]. With it, the device is
    /// opened (once per process) and any reason it cannot be used is a typed error
    /// ([`crate::Error::CudaUnavailable`]: no driver, no device, no such ordinal, no cuBLASLt); it never
    /// panics, with or without a driver present.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            crate::cuda::device(ordinal).map(|_| Device::Cuda(ordinal))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(crate::Error::CudaNotBuilt)
        }
    }

    /// Whether this is the host.
    pub fn is_cpu(self) -> bool {
        self == Device::Cpu
    }

    /// Memory free for new buffers, in bytes: the host's `MemAvailable` (Linux's
    /// `/proc/meminfo`), or the GPU's free memory as the driver reports it. `None` where it
    /// cannot be told.
    pub fn free_memory(self) -> Option<u64> {
        match self {
            Device::Cpu => {
                let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
                let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(ordinal) => crate::cuda::device(ordinal).ok()?.free_memory().ok(),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => None,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = String;

    /// Parses `cpu`, `cuda` (ordinal 0) or `cuda:N`. Availability is checked by [`Device::cuda`].
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device `{s}` (expected cpu, cuda or cuda:N)")),
        }
    }
}
