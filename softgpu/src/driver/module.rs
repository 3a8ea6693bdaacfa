//! PTX modules and their functions: `cuModuleLoadData`, `cuModuleGetFunction`,
//! `cuModuleUnload`, `cuFuncGetAttribute`, `cuFuncSetAttribute`.
//!
//! A module image must be NUL-terminated PTX text; it is parsed and decoded at load
//! ([`crate::program::Program::load`]), so PTX that does not parse or uses an instruction the
//! interpreter cannot run fails here with `CUDA_ERROR_INVALID_PTX` and a message naming the
//! kernel, PTX line and instruction (printed to stderr and kept for
//! [`super::errors::kiln_softgpu_last_error`]). Cubins and fatbins are
//! `CUDA_ERROR_INVALID_IMAGE`: the software GPU runs PTX only.
//!
//! A function's dynamic shared memory limit starts at the default per-block limit (48 KiB)
//! minus its static shared memory, and `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` may
//! raise it up to the opt-in limit minus the static shared memory.

use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::errors::{CUresult, Failure, bail, guard, put};
use super::handles::Registry;
use super::init::{context, device_of_handle};
use super::launch::profile_settings;
use super::{CUfunction, CUmodule};
use crate::device::DeviceSpec;
use crate::memory::MemoryError;
use crate::program::{Kernel, LoadError, Program};

/// The register count `CU_FUNC_ATTRIBUTE_NUM_REGS` reports. The interpreter has no register
/// allocation; 64 is a typical count for kiln's kernels, and 64 x 1024 threads fits the
/// 65536 registers of a block, so the value never makes a valid launch look impossible.
pub const REPORTED_NUM_REGS: c_int = 64;

pub(crate) struct Module {
    program: Program,
    /// Function handles already given out, by kernel name (each name has one handle).
    functions: Mutex<BTreeMap<String, usize>>,
}

pub(crate) struct Function {
    pub(crate) kernel: Arc<Kernel>,
    /// Dynamic shared memory allowed (bytes).
    max_dynamic_shared: AtomicU32,
    /// `CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT` (-1: no preference); stored only.
    carveout: AtomicI32,
}

impl Function {
    /// Static plus dynamic shared memory a launch may use.
    pub(crate) fn max_shared(&self) -> u32 {
        self.kernel.static_shared.saturating_add(self.max_dynamic_shared.load(Ordering::Relaxed))
    }
}

pub(crate) static MODULES: Registry<Module> = Registry::new("module");
pub(crate) static FUNCTIONS: Registry<Function> = Registry::new("function");

fn load_error(e: LoadError) -> Failure {
    let code = match e {
        LoadError::Memory(MemoryError::OutOfMemory { .. }) => CUresult::CUDA_ERROR_OUT_OF_MEMORY,
        _ => CUresult::CUDA_ERROR_INVALID_PTX,
    };
    Failure::new(code, format!("the module does not load: {e}")).reported()
}

/// Loads a NUL-terminated PTX module.
///
/// # Safety
/// `image` must be null or a NUL-terminated string; `module` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) -> CUresult {
    guard("cuModuleLoadData", || {
        let device = context()?;
        if module.is_null() || image.is_null() {
            bail!(CUDA_ERROR_INVALID_VALUE, "module or image is null");
        }
        // SAFETY: the caller passes a NUL-terminated image (PTX text is one).
        let bytes = unsafe { CStr::from_ptr(image as *const c_char) }.to_bytes();
        if bytes.starts_with(b"\x7fELF")
            || bytes.starts_with(&[0x50, 0xed, 0x55, 0xba])
            || bytes.starts_with(&[0xb1, 0x43, 0x62, 0x46])
        {
            return Err(Failure::new(
                CUresult::CUDA_ERROR_INVALID_IMAGE,
                "the image is a cubin or fatbin; the software GPU loads PTX text only",
            )
            .reported());
        }
        let Ok(ptx) = std::str::from_utf8(bytes) else {
            return Err(
                Failure::new(CUresult::CUDA_ERROR_INVALID_PTX, "the image is not UTF-8 PTX text").reported()
            );
        };
        let mut program = Program::load(ptx, device).map_err(load_error)?;
        if profile_settings().print {
            let (major, minor) = device.spec.compute_capability;
            program.set_registers(&crate::exec::profile::ptxas_registers(ptx, major * 10 + minor));
        }
        put(module, MODULES.insert(Arc::new(Module { program, functions: Mutex::default() })), "module")
    })
}

/// The function named `name` (`CUDA_ERROR_NOT_FOUND` if the module has no such kernel).
///
/// # Safety
/// `name` must be null or NUL-terminated; `hfunc` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleGetFunction(
    hfunc: *mut CUfunction,
    hmod: CUmodule,
    name: *const c_char,
) -> CUresult {
    guard("cuModuleGetFunction", || {
        let device = device_of_handle()?;
        let module = MODULES.get(hmod)?;
        if hfunc.is_null() || name.is_null() {
            bail!(CUDA_ERROR_INVALID_VALUE, "hfunc or name is null");
        }
        // SAFETY: NUL-terminated, as the API requires.
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
        let Some(kernel) = module.program.kernel(&name) else {
            let mut names: Vec<_> = module.program.kernel_names().collect();
            names.sort_unstable();
            bail!(CUDA_ERROR_NOT_FOUND, "the module has no kernel `{name}` (it has: {})", names.join(", "));
        };
        let mut functions = module.functions.lock().unwrap_or_else(|p| p.into_inner());
        let h = match functions.get(&name) {
            Some(&h) => h,
            None => {
                let dynamic = device.spec.shared_per_block.saturating_sub(kernel.static_shared);
                let f = Function {
                    kernel: kernel.clone(),
                    max_dynamic_shared: AtomicU32::new(dynamic),
                    carveout: AtomicI32::new(-1),
                };
                let h = FUNCTIONS.insert(Arc::new(f)) as usize;
                functions.insert(name, h);
                h
            }
        };
        put(hfunc, h as CUfunction, "hfunc")
    })
}

/// Unloads the module; its functions' handles become invalid (launches already captured in
/// graphs keep their kernels).
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleUnload(hmod: CUmodule) -> CUresult {
    guard("cuModuleUnload", || {
        device_of_handle()?;
        let module = MODULES.remove(hmod)?;
        for &h in module.functions.lock().unwrap_or_else(|p| p.into_inner()).values() {
            let _ = FUNCTIONS.remove(h as CUfunction);
        }
        Ok(())
    })
}

/// The value of function attribute `attrib` (`CUfunction_attribute` numbers), or `None`.
fn function_attribute(f: &Function, spec: &DeviceSpec, attrib: c_uint) -> Option<c_int> {
    let k = &f.kernel;
    let cc = (spec.compute_capability.0 * 10 + spec.compute_capability.1) as c_int;
    Some(match attrib {
        0 => k.max_threads.min(spec.max_threads_per_block) as c_int,
        1 => k.static_shared as c_int,
        2 => 0, // CONST_SIZE_BYTES: module constants are global allocations
        3 => k.local_bytes as c_int,
        4 => REPORTED_NUM_REGS,
        5 | 6 => cc, // PTX / BINARY_VERSION: the device's, as JIT-compiled for it
        7 => 0,      // CACHE_MODE_CA
        8 => f.max_dynamic_shared.load(Ordering::Relaxed) as c_int,
        9 => f.carveout.load(Ordering::Relaxed),
        10..=15 => 0, // cluster attributes: no clusters
        _ => return None,
    })
}

/// # Safety
/// `pi` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuFuncGetAttribute(pi: *mut c_int, attrib: c_uint, hfunc: CUfunction) -> CUresult {
    guard("cuFuncGetAttribute", || {
        let device = device_of_handle()?;
        let f = FUNCTIONS.get(hfunc)?;
        let Some(v) = function_attribute(&f, &device.spec, attrib) else {
            bail!(CUDA_ERROR_INVALID_VALUE, "function attribute {attrib} is not modelled");
        };
        put(pi, v, "pi")
    })
}

/// Sets `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` (8) or
/// `CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT` (9); other attributes are read-only
/// or not modelled (`CUDA_ERROR_INVALID_VALUE`).
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuFuncSetAttribute(hfunc: CUfunction, attrib: c_uint, value: c_int) -> CUresult {
    guard("cuFuncSetAttribute", || {
        let device = device_of_handle()?;
        let f = FUNCTIONS.get(hfunc)?;
        match attrib {
            8 => {
                let limit = device.spec.shared_per_block_optin.saturating_sub(f.kernel.static_shared);
                if value < 0 || value as u32 > limit {
                    bail!(
                        CUDA_ERROR_INVALID_VALUE,
                        "{} bytes of dynamic shared memory for {}: the limit is {limit} (opt-in {} minus {} static)",
                        value,
                        f.kernel.name,
                        device.spec.shared_per_block_optin,
                        f.kernel.static_shared
                    );
                }
                f.max_dynamic_shared.store(value as u32, Ordering::Relaxed);
            }
            9 => {
                if !(-1..=100).contains(&value) {
                    bail!(CUDA_ERROR_INVALID_VALUE, "shared memory carveout {value}% is not in -1..=100");
                }
                f.carveout.store(value, Ordering::Relaxed);
            }
            _ => bail!(CUDA_ERROR_INVALID_VALUE, "function attribute {attrib} cannot be set"),
        }
        Ok(())
    })
}

/// Cache preferences do not matter to the software GPU: checks the arguments.
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuFuncSetCacheConfig(hfunc: CUfunction, config: c_uint) -> CUresult {
    guard("cuFuncSetCacheConfig", || {
        device_of_handle()?;
        FUNCTIONS.get(hfunc)?;
        if config > 3 {
            bail!(CUDA_ERROR_INVALID_VALUE, "cache config {config}");
        }
        Ok(())
    })
}
