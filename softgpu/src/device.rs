//! The one simulated device of the process: what it reports (an H100/H200-class sm_90 part by
//! default, or sm_80 with `KILN_SOFTGPU_ARCH=80`) and its memory.
//!
//! Settings come from the environment when the device is first used:
//! - `KILN_SOFTGPU_ARCH`: `90` (default) or `80`;
//! - `KILN_SOFTGPU_MEMORY`: device memory in bytes, or with a `K`/`M`/`G` suffix (default 8G);
//!   allocations are real host memory, so this bounds what a test can take.

use std::sync::{Arc, OnceLock};

use crate::memory::DeviceMemory;

/// What the device reports through `cuDeviceGetAttribute` and `cuDeviceGetName`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceSpec {
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (u32, u32),
    pub multiprocessors: u32,
    /// Shared memory a block gets without opting in (48 KiB).
    pub shared_per_block: u32,
    /// Shared memory a block may opt in to with `cuFuncSetAttribute`.
    pub shared_per_block_optin: u32,
    pub shared_per_multiprocessor: u32,
    pub registers_per_block: u32,
    pub registers_per_multiprocessor: u32,
    pub max_threads_per_block: u32,
    pub max_threads_per_multiprocessor: u32,
    pub max_block_dim: [u32; 3],
    pub max_grid_dim: [u32; 3],
    pub warp_size: u32,
    pub memory_bytes: u64,
}

impl DeviceSpec {
    /// An H100/H200-class Hopper part.
    pub fn sm90(memory_bytes: u64) -> Self {
        DeviceSpec {
            name: "kiln softgpu (sm_90, H100-class)".to_owned(),
            compute_capability: (9, 0),
            multiprocessors: 132,
            shared_per_block: 48 * 1024,
            shared_per_block_optin: 227 * 1024,
            shared_per_multiprocessor: 228 * 1024,
            registers_per_block: 65536,
            registers_per_multiprocessor: 65536,
            max_threads_per_block: 1024,
            max_threads_per_multiprocessor: 2048,
            max_block_dim: [1024, 1024, 64],
            max_grid_dim: [i32::MAX as u32, 65535, 65535],
            warp_size: 32,
            memory_bytes,
        }
    }

    /// An A100-class Ampere part.
    pub fn sm80(memory_bytes: u64) -> Self {
        DeviceSpec {
            name: "kiln softgpu (sm_80, A100-class)".to_owned(),
            compute_capability: (8, 0),
            multiprocessors: 108,
            shared_per_block_optin: 163 * 1024,
            shared_per_multiprocessor: 164 * 1024,
            ..Self::sm90(memory_bytes)
        }
    }

    /// The spec chosen by the environment (see the module docs).
    pub fn from_env() -> Result<Self, String> {
        let memory = match std::env::var("KILN_SOFTGPU_MEMORY") {
            Ok(v) => {
                parse_bytes(&v).ok_or_else(|| format!("KILN_SOFTGPU_MEMORY={v:?} is not a byte count"))?
            }
            Err(_) => 8 << 30,
        };
        match std::env::var("KILN_SOFTGPU_ARCH").as_deref() {
            Err(_) | Ok("90") => Ok(Self::sm90(memory)),
            Ok("80") => Ok(Self::sm80(memory)),
            Ok(other) => Err(format!("KILN_SOFTGPU_ARCH={other:?}: only 90 and 80 are modelled")),
        }
    }
}

/// `"8G"`, `"512M"`, `"1024"` as bytes.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The device: its spec and memory.
pub struct Device {
    pub spec: DeviceSpec,
    pub memory: Arc<DeviceMemory>,
}

impl Device {
    pub fn new(spec: DeviceSpec) -> Self {
        let memory = Arc::new(DeviceMemory::new(spec.memory_bytes));
        Device { spec, memory }
    }
}

/// The process's device, made from the environment on first use (an error if the
/// environment is invalid).
pub fn device() -> Result<&'static Device, &'static str> {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    DEVICE.get_or_init(|| DeviceSpec::from_env().map(Device::new)).as_ref().map_err(|e| e.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("8G"), Some(8 << 30));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("x"), None);
    }

    #[test]
    fn specs() {
        assert_eq!(DeviceSpec::sm90(1).shared_per_block_optin, 227 * 1024);
        assert_eq!(DeviceSpec::sm80(1).compute_capability, (8, 0));
    }
}
