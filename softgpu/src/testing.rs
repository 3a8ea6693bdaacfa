//! A small harness for tests: a private device, buffers, and launching PTX text with
//! arguments laid out as the kernel declares them.

use std::sync::Arc;

use crate::device::{Device, DeviceSpec};
use crate::exec::{Counters, LaunchConfig, LaunchError, LaunchOptions, launch};
use crate::program::{LoadError, Program};

/// A kernel argument.
#[derive(Clone, Debug)]
pub enum Arg {
    U32(u32),
    U64(u64),
    F32(f32),
    /// A struct passed by value, as its bytes.
    Bytes(Vec<u8>),
}

impl Arg {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Arg::U32(v) => v.to_le_bytes().to_vec(),
            Arg::U64(v) => v.to_le_bytes().to_vec(),
            Arg::F32(v) => v.to_le_bytes().to_vec(),
            Arg::Bytes(b) => b.clone(),
        }
    }
}

/// A device of its own (sm_90, 1 GiB) for one test.
pub struct Harness {
    pub device: Device,
    pub options: LaunchOptions,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        let spec = DeviceSpec::sm90(1 << 30);
        let mut options = LaunchOptions::new(&spec);
        options.max_shared = spec.shared_per_block_optin;
        // Tests read the bank-conflict counters too.
        options.count_banks = true;
        Harness { device: Device::new(spec), options }
    }

    /// A buffer holding `bytes`.
    pub fn buffer(&self, bytes: &[u8]) -> u64 {
        let a = self.device.memory.alloc(bytes.len() as u64).expect("test allocation");
        self.device.memory.write(a, bytes).expect("test write");
        a
    }

    /// A buffer of `words` u32 values.
    pub fn buffer_u32(&self, words: &[u32]) -> u64 {
        self.buffer(&words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<_>>())
    }

    /// A buffer of `len` bytes, never written.
    pub fn uninit(&self, len: u64) -> u64 {
        self.device.memory.alloc(len).expect("test allocation")
    }

    /// `len` bytes at `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.device.memory.read(addr, &mut out).expect("test read");
        out
    }

    /// `n` u32 values at `addr`.
    pub fn read_u32(&self, addr: u64, n: usize) -> Vec<u32> {
        self.read(addr, n * 4).chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
    }

    /// `n` u64 values at `addr`.
    pub fn read_u64(&self, addr: u64, n: usize) -> Vec<u64> {
        self.read(addr, n * 8).chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
    }

    /// Loads `ptx`.
    pub fn load(&self, ptx: &str) -> Result<Program, LoadError> {
        Program::load(ptx, &self.device)
    }

    /// Loads `ptx` and launches `kernel` with `args`.
    pub fn run(
        &self,
        ptx: &str,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        dynamic_shared: u32,
        args: &[Arg],
    ) -> Result<Counters, LaunchError> {
        let program = self.load(ptx).unwrap_or_else(|e| panic!("PTX does not load: {e}"));
        let k = program.kernel(kernel).unwrap_or_else(|| panic!("no kernel {kernel}"));
        let mut params = vec![0u8; k.param_bytes as usize];
        assert_eq!(args.len(), k.params.len(), "argument count");
        for (a, slot) in args.iter().zip(&k.params) {
            let b = a.bytes();
            assert_eq!(b.len(), slot.size as usize, "argument size");
            params[slot.offset as usize..][..b.len()].copy_from_slice(&b);
        }
        let cfg = LaunchConfig { grid, block, dynamic_shared };
        let view = Arc::clone(&self.device.memory).view();
        launch(k, &cfg, &params, &view, &self.device.spec, &self.options)
    }
}

/// A PTX module around one kernel `k` with the given parameter list and body.
pub fn kernel_ptx(params: &str, body: &str) -> String {
    format!(".version 8.8\n.target sm_90\n.address_size 64\n.visible .entry k({params})\n{{\n{body}\n}}\n")
}
