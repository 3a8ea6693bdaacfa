//! Every kernel family compiled (through the cache) for one GPU and loaded into its context;
//! functions are handed out by typed kernel or by entry name.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, DriverError};
use cudarc::nvrtc::Ptx;

use crate::Family;
use crate::compile::{Arch, CompileError, Compiler};
use crate::elementwise::ElementwiseKernel;
use crate::norm::NormKernel;

/// Why the kernels could not be made ready on a device.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// NVRTC missing or a family failed to compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The driver could not report the device's architecture.
    #[error("cannot read the device's compute capability: {0}")]
    Device(DriverError),
    /// The driver rejected a family's PTX (for instance PTX newer than the driver).
    #[error("loading {file} ({arch}) into the CUDA context failed: {source}")]
    Load {
        /// The family's source file.
        file: &'static str,
        /// The architecture it was compiled for.
        arch: Arch,
        /// The driver's error.
        source: DriverError,
    },
    /// No such entry point in the family's module.
    #[error("{file} has no kernel {entry}: {source}")]
    MissingEntry {
        /// The family's source file.
        file: &'static str,
        /// The entry point asked for.
        entry: String,
        /// The driver's error.
        source: DriverError,
    },
}

/// The four families loaded into one CUDA context, compiled for its device's architecture.
#[derive(Debug)]
pub struct KernelModules {
    arch: Arch,
    modules: HashMap<Family, Arc<CudaModule>>,
}

impl KernelModules {
    /// Compiles (or reads from `compiler`'s cache) every family for the device of `ctx` and
    /// loads it. The first start on a machine compiles; later starts read PTX from the cache
    /// (the driver then JIT-compiles it to machine code, caching that in its own cache).
    pub fn load(ctx: &Arc<CudaContext>, compiler: &Compiler) -> Result<Self, ModuleError> {
        let (major, minor) = ctx.compute_capability().map_err(ModuleError::Device)?;
        let device = Arch { major: major.max(0) as u32, minor: minor.max(0) as u32 };
        let arch = compiler.target_for(device);
        let mut modules = HashMap::new();
        for family in Family::ALL {
            let compiled = compiler.compile(family, arch)?;
            let module = ctx
                .load_module(Ptx::from_src(compiled.ptx))
                .map_err(|source| ModuleError::Load { file: family.file_name(), arch, source })?;
            modules.insert(family, module);
        }
        Ok(KernelModules { arch, modules })
    }

    /// The architecture the modules were compiled for.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The loaded module of `family`.
    pub fn module(&self, family: Family) -> &Arc<CudaModule> {
        &self.modules[&family]
    }

    /// The entry point `entry` of `family`'s module.
    pub fn function(&self, family: Family, entry: &str) -> Result<CudaFunction, ModuleError> {
        self.module(family).load_function(entry).map_err(|source| ModuleError::MissingEntry {
            file: family.file_name(),
            entry: entry.to_owned(),
            source,
        })
    }

    /// A norm kernel.
    pub fn norm(&self, kernel: NormKernel) -> Result<CudaFunction, ModuleError> {
        self.function(Family::Norm, &kernel.entry())
    }

    /// An elementwise kernel.
    pub fn elementwise(&self, kernel: ElementwiseKernel) -> Result<CudaFunction, ModuleError> {
        self.function(Family::Elementwise, &kernel.entry())
    }
}
