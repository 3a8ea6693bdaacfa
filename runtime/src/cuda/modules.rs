//! The kernel modules of one device: each kiln-kernels family compiled (NVRTC, for the
//! device's architecture, through kiln-kernels' on-disk cache) and loaded on first use.
//!
//! Loading is per family and lazy, so a device opens without compiling anything, and a family
//! that fails to compile only fails the ops that need it ([`crate::Error::Kernels`], carrying
//! kiln-kernels' error with NVRTC's log).
//!
//! kiln-kernels' compile path (`KernelModules`) has not landed on this branch yet; until it
//! does, [`Modules::function`] returns [`crate::Error::Kernels`] saying so.

use cudarc::driver::CudaFunction;
use kiln_kernels::Family;

use super::CudaDevice;
use crate::{Device, Error, Result};

/// The lazily loaded kernel families of one device.
pub(crate) struct Modules {
    device: Device,
}

impl Modules {
    /// No family loaded yet.
    pub(crate) fn new(device: Device) -> Self {
        Modules { device }
    }

    /// The entry point `entry` of `family`, compiling and loading the family on first use.
    pub(crate) fn function(&self, dev: &CudaDevice, family: Family, entry: &str) -> Result<CudaFunction> {
        let _ = (dev, entry);
        Err(Error::Kernels {
            device: self.device,
            family: family_name(family),
            source: "kiln-kernels' compile path (KernelModules) is not merged into this build yet".into(),
        })
    }
}

/// The family's short name, for errors.
pub(crate) fn family_name(family: Family) -> &'static str {
    match family {
        Family::Attention => "attention",
        Family::Conv => "conv",
        Family::Norm => "norm",
        Family::Elementwise => "elementwise",
    }
}
