//! A loaded PTX module: every kernel decoded into executable instructions, module-scope
//! `.global`/`.const` variables placed in device memory.

use std::collections::HashMap;
use std::sync::Arc;

use crate::device::Device;

pub mod decode;
pub mod inst;

pub use inst::{Inst, Kind, Opnd};

/// Why PTX could not be loaded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error("PTX does not parse: {0}")]
    Parse(#[from] crate::ptx::ParseError),
    /// An instruction the interpreter does not know, or cannot decode.
    #[error("kernel {kernel}, PTX line {line}: `{instruction}`: {message}")]
    Unsupported { kernel: String, line: u32, instruction: String, message: String },
    #[error("PTX module: {0}")]
    Invalid(String),
    #[error("placing module variables in device memory: {0}")]
    Memory(#[from] crate::memory::MemoryError),
}

/// One kernel parameter's place in the parameter buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSlot {
    pub offset: u32,
    pub size: u32,
    pub align: u32,
}

/// A decoded kernel, ready to launch.
#[derive(Debug)]
pub struct Kernel {
    pub name: String,
    /// Parameters in order, laid out with their PTX alignment.
    pub params: Vec<ParamSlot>,
    /// Bytes of the parameter buffer.
    pub param_bytes: u32,
    /// Bytes of statically declared shared memory (dynamic shared memory follows it).
    pub static_shared: u32,
    /// Alignment of the dynamic shared memory start.
    pub dynamic_shared_align: u32,
    /// Per-thread local memory bytes (stack frames, call parameters).
    pub local_bytes: u32,
    /// `.maxntid`/`.reqntid` product, or 1024.
    pub max_threads: u32,
    /// Register slots per thread (special registers included).
    pub reg_slots: u32,
    /// Registers per thread of the real GPU's code, from ptxas, when profiling found them.
    pub registers: Option<u32>,
    /// The instructions; the kernel starts at 0.
    pub code: Vec<Inst>,
    /// `.file` table for source locations.
    pub files: Arc<HashMap<u32, String>>,
}

/// A loaded module: its kernels and the device allocations of its variables.
#[derive(Debug)]
pub struct Program {
    kernels: HashMap<String, Arc<Kernel>>,
    /// Device addresses of module variables, freed with the module.
    variables: Vec<u64>,
    memory: Arc<crate::memory::DeviceMemory>,
}

impl Program {
    /// Parses and decodes `ptx`, placing its module variables in `device`'s memory.
    pub fn load(ptx: &str, device: &Device) -> Result<Program, LoadError> {
        let module = crate::ptx::parse_module(ptx)?;
        let (kernels, variables) = decode::decode_module(&module, &device.memory)?;
        Ok(Program {
            kernels: kernels.into_iter().map(|k| (k.name.clone(), Arc::new(k))).collect(),
            variables,
            memory: device.memory.clone(),
        })
    }

    /// The kernel named `name`.
    pub fn kernel(&self, name: &str) -> Option<&Arc<Kernel>> {
        self.kernels.get(name)
    }

    /// Records ptxas's register counts (kernel name -> registers per thread), before the
    /// kernels are shared with launches.
    pub fn set_registers(&mut self, registers: &HashMap<String, u32>) {
        for (name, kernel) in &mut self.kernels {
            if let (Some(k), Some(&r)) = (Arc::get_mut(kernel), registers.get(name)) {
                k.registers = Some(r);
            }
        }
    }

    /// The kernels' names.
    pub fn kernel_names(&self) -> impl Iterator<Item = &str> {
        self.kernels.keys().map(String::as_str)
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        for &a in &self.variables {
            let _ = self.memory.free(a);
        }
    }
}
