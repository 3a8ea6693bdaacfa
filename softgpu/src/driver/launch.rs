//! `cuLaunchKernel`: parameters copied from the `kernelParams` array into the kernel's
//! parameter buffer (each pointer's `size` bytes at the parameter's offset, so structs passed
//! by value keep their layout), then the grid runs at once ([`crate::exec::launch`]).
//!
//! An invalid configuration (a zero or too large dimension, too many threads, more shared
//! memory than the function's limit) is `CUDA_ERROR_INVALID_VALUE` and nothing runs. A fault
//! prints the sanitizer's report (kernel, block, thread, instruction, PTX and source line),
//! is returned here (CUDA would report it from a later call) and makes the context's error
//! sticky. Fault kinds map to CUDA's codes:
//!
//! | fault | code |
//! |---|---|
//! | `IllegalAddress` | `CUDA_ERROR_ILLEGAL_ADDRESS` (700) |
//! | `Misaligned` | `CUDA_ERROR_MISALIGNED_ADDRESS` (716) |
//! | `Deadlock`, `InstructionBudget` | `CUDA_ERROR_LAUNCH_TIMEOUT` (702) |
//! | `IllegalInstruction`, `BarrierDivergence` | `CUDA_ERROR_ILLEGAL_INSTRUCTION` (715) |
//! | `Trap` | `CUDA_ERROR_ASSERT` (710) if the message names an assertion, else `CUDA_ERROR_LAUNCH_FAILED` (719) |
//! | `UninitializedRead`, `SharedRace` | `CUDA_ERROR_LAUNCH_FAILED` (719) |

use std::ffi::{c_uint, c_void};
use std::sync::{Arc, OnceLock};

use super::errors::{CUresult, Failure, bail, guard};
use super::init::context;
use super::module::FUNCTIONS;
use super::ops::{LaunchOp, Op};
use super::stream::submit;
use super::{CUfunction, CUstream};
use crate::device::Device;
use crate::exec::profile::{self, ProfileSettings};
use crate::exec::{LaunchConfig, LaunchError, LaunchOptions};
use crate::fault::{Fault, FaultKind};

/// The code CUDA reports for a fault.
pub fn fault_code(fault: &Fault) -> CUresult {
    match fault.kind {
        FaultKind::IllegalAddress => CUresult::CUDA_ERROR_ILLEGAL_ADDRESS,
        FaultKind::Misaligned => CUresult::CUDA_ERROR_MISALIGNED_ADDRESS,
        FaultKind::Deadlock | FaultKind::InstructionBudget => CUresult::CUDA_ERROR_LAUNCH_TIMEOUT,
        FaultKind::IllegalInstruction | FaultKind::BarrierDivergence => {
            CUresult::CUDA_ERROR_ILLEGAL_INSTRUCTION
        }
        FaultKind::Trap if fault.message.contains("assert") => CUresult::CUDA_ERROR_ASSERT,
        FaultKind::Trap | FaultKind::UninitializedRead | FaultKind::SharedRace => {
            CUresult::CUDA_ERROR_LAUNCH_FAILED
        }
    }
}

/// `KILN_SOFTGPU_PROFILE` and `KILN_SOFTGPU_SAMPLE`, read once.
pub(crate) fn profile_settings() -> &'static ProfileSettings {
    static SETTINGS: OnceLock<ProfileSettings> = OnceLock::new();
    SETTINGS.get_or_init(ProfileSettings::from_env)
}

/// Runs a launch (issued or replayed).
pub(crate) fn run(device: &Device, op: &LaunchOp) -> Result<(), Failure> {
    static OPTIONS: OnceLock<LaunchOptions> = OnceLock::new();
    let mut options = OPTIONS.get_or_init(|| LaunchOptions::new(&device.spec)).clone();
    options.max_shared = op.max_shared;
    let settings = profile_settings();
    let total = op.cfg.grid.iter().map(|&d| d as u64).product::<u64>();
    options.sample = profile::sample_ctas(total, settings.sample);
    let view = device.memory.view();
    match crate::exec::launch(&op.kernel, &op.cfg, &op.params, &view, &device.spec, &options) {
        Ok(counters) => {
            if settings.print {
                let run = options.sample.as_ref().map(|s| s.len() as u64);
                let counters = run.map_or(counters.clone(), |n| profile::scale(&counters, n, total));
                let threads = op.cfg.block.iter().product::<u32>();
                let shared = op.kernel.static_shared + op.cfg.dynamic_shared;
                let occupancy = profile::occupancy(&device.spec, threads, shared, op.kernel.registers);
                eprintln!(
                    "{}",
                    profile::report(&op.kernel.name, &op.cfg, &counters, run, occupancy, op.kernel.registers)
                );
            }
            Ok(())
        }
        Err(e @ (LaunchError::InvalidConfig { .. } | LaunchError::TooMuchShared { .. })) => {
            Err(Failure::invalid(e.to_string()).reported())
        }
        Err(LaunchError::Fault(f)) => {
            let mut failure = Failure::new(fault_code(&f.fault), f.to_string()).reported();
            failure.sticky = true;
            Err(failure)
        }
    }
}

/// Launches `f` on `hStream` (runs it to completion, or records it while the stream captures).
///
/// # Safety
/// `kernelParams` must hold one readable pointer per kernel parameter, each to a value of the
/// parameter's size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchKernel(
    f: CUfunction,
    gridDimX: c_uint,
    gridDimY: c_uint,
    gridDimZ: c_uint,
    blockDimX: c_uint,
    blockDimY: c_uint,
    blockDimZ: c_uint,
    sharedMemBytes: c_uint,
    hStream: CUstream,
    kernelParams: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    guard("cuLaunchKernel", || {
        context()?;
        let func = FUNCTIONS.get(f)?;
        if !extra.is_null() {
            bail!(CUDA_ERROR_NOT_SUPPORTED, "`extra` launch parameters are not supported; pass kernelParams");
        }
        let kernel = &func.kernel;
        if !kernel.params.is_empty() && kernelParams.is_null() {
            bail!(
                CUDA_ERROR_INVALID_VALUE,
                "kernel {} takes {} parameters but kernelParams is null",
                kernel.name,
                kernel.params.len()
            );
        }
        let mut params = vec![0u8; kernel.param_bytes as usize];
        for (i, slot) in kernel.params.iter().enumerate() {
            // SAFETY: the caller passes one pointer per parameter.
            let p = unsafe { *kernelParams.add(i) } as *const u8;
            if p.is_null() {
                bail!(CUDA_ERROR_INVALID_VALUE, "kernelParams[{i}] of kernel {} is null", kernel.name);
            }
            // SAFETY: each pointer points at a value of the parameter's size.
            let value = unsafe { std::slice::from_raw_parts(p, slot.size as usize) };
            params[slot.offset as usize..][..value.len()].copy_from_slice(value);
        }
        let cfg = LaunchConfig {
            grid: [gridDimX, gridDimY, gridDimZ],
            block: [blockDimX, blockDimY, blockDimZ],
            dynamic_shared: sharedMemBytes,
        };
        let op = LaunchOp { kernel: kernel.clone(), cfg, params, max_shared: func.max_shared() };
        submit(hStream, Op::Launch(Arc::new(op)))
    })
}
