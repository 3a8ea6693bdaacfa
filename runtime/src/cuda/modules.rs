//! The kernel modules of one device: kiln-kernels' [`KernelModules`] (every family compiled by
//! NVRTC for the device's architecture, through kiln-kernels' on-disk PTX cache, and loaded into
//! the context), made on the first op that needs a kernel, and the functions looked up so far.
//!
//! Loading is lazy so that opening a device compiles nothing and the cuBLASLt ops work even
//! where NVRTC is missing; the first kernel op then reports [`crate::Error::Kernels`] with
//! kiln-kernels' error (NVRTC or headers missing, NVRTC's log, PTX the driver rejects). A
//! failed load is not remembered: the next op tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction};
use kiln_kernels::{Compiler, Family, KernelModules};

use crate::{Device, Error, Result};

/// The lazily loaded kernel modules of one device and a cache of their functions.
pub(crate) struct Modules {
    device: Device,
    modules: Mutex<Option<Arc<KernelModules>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
}

impl Modules {
    /// Nothing loaded yet.
    pub(crate) fn new(device: Device) -> Self {
        Modules { device, modules: Mutex::new(None), functions: Mutex::new(HashMap::new()) }
    }

    /// Every family loaded into `ctx`, compiling (or reading the PTX cache) on first use.
    fn modules(&self, op: &'static str, ctx: &Arc<CudaContext>) -> Result<Arc<KernelModules>> {
        let mut slot = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let err = |source: Box<dyn std::error::Error + Send + Sync>| Error::Kernels {
            op,
            device: self.device,
            source,
        };
        let compiler = Compiler::new().map_err(|e| err(Box::new(e)))?;
        let loaded = Arc::new(KernelModules::load(ctx, &compiler).map_err(|e| err(Box::new(e)))?);
        *slot = Some(loaded.clone());
        Ok(loaded)
    }

    /// The entry point `entry` of `family` for `op`.
    pub(crate) fn function(
        &self,
        op: &'static str,
        ctx: &Arc<CudaContext>,
        family: Family,
        entry: &str,
    ) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().unwrap_or_else(|e| e.into_inner()).get(entry) {
            return Ok(f.clone());
        }
        let f = self.modules(op, ctx)?.function(family, entry).map_err(|e| Error::Kernels {
            op,
            device: self.device,
            source: Box::new(e),
        })?;
        self.functions.lock().unwrap_or_else(|e| e.into_inner()).insert(entry.to_owned(), f.clone());
        Ok(f)
    }
}
