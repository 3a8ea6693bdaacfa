//! The exported heuristic query and the matmul itself.
//!
//! There is one algorithm: the reference GEMM of `gemm.rs`. The heuristic therefore answers
//! with exactly one result whenever [`plan`] accepts the problem, needing no workspace; the
//! algorithm it returns carries a tag but `cublasLtMatmul` accepts any algorithm (or NULL, which
//! cuBLASLt documents as "run the heuristic implicitly"), since all lead to the same kernel.
//!
//! The stream argument is ignored: the software GPU executes every operation synchronously, in
//! the order issued, which is a valid schedule of any stream order.

use std::ffi::{c_int, c_void};

use super::abi::{fail, guard, object};
use super::desc::{Handle, MatmulDesc, MatrixLayout, Preference};
use super::gemm::{self, Pointers};
use super::logger;
use super::plan::{Plan, plan};
use super::types::Status;

/// `cublasLtMatmulAlgo_t`: 64 opaque bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatmulAlgo {
    pub data: [u64; 8],
}

/// `cublasLtMatmulHeuristicResult_t`, laid out as in `cublasLt.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeuristicResult {
    pub algo: MatmulAlgo,
    pub workspace_size: usize,
    pub state: Status,
    pub waves_count: f32,
    pub reserved: [c_int; 4],
}

/// The tag in `data[0]` of the one algorithm ("kilnGEMM").
pub const ALGO_TAG: u64 = u64::from_le_bytes(*b"kilnGEMM");

/// The problem of the descriptor and layouts, checked; the refusal is reported under `func`.
///
/// # Safety
/// Each pointer is null or a live object of its kind.
unsafe fn checked(
    func: &str,
    desc: *mut MatmulDesc,
    layouts: [*mut MatrixLayout; 4],
) -> Result<Plan, Status> {
    // SAFETY: as the caller guarantees.
    let desc = unsafe { object(func, "matmulDesc", desc)? };
    let mut l = Vec::with_capacity(4);
    for (ptr, name) in layouts.into_iter().zip(["Adesc", "Bdesc", "Cdesc", "Ddesc"]) {
        // SAFETY: as the caller guarantees.
        l.push(unsafe { object(func, name, ptr)? });
    }
    plan(desc, l[0], l[1], l[2], l[3]).map_err(|r| fail(func, r.status, &r.why))
}

/// Returns the one algorithm if the problem is supported; otherwise the refusal's status
/// (`NOT_SUPPORTED`, or `INVALID_VALUE` for an inconsistent problem) with no results.
///
/// # Safety
/// Handles null or live; `results` holds `requested` writable results; `count` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmulAlgoGetHeuristic(
    handle: *mut Handle,
    desc: *mut MatmulDesc,
    a_desc: *mut MatrixLayout,
    b_desc: *mut MatrixLayout,
    c_desc: *mut MatrixLayout,
    d_desc: *mut MatrixLayout,
    pref: *mut Preference,
    requested: c_int,
    results: *mut HeuristicResult,
    count: *mut c_int,
) -> Status {
    const F: &str = "cublasLtMatmulAlgoGetHeuristic";
    guard(F, || {
        // SAFETY: every pointer as the caller guarantees.
        unsafe {
            if let Err(s) = object(F, "lightHandle", handle) {
                return s;
            }
            if let Err(s) = object(F, "preference", pref) {
                return s;
            }
            if requested <= 0 || results.is_null() || count.is_null() {
                return fail(F, Status::InvalidValue, "requestedAlgoCount <= 0, or a NULL result pointer");
            }
            count.write(0);
            if let Err(s) = checked(F, desc, [a_desc, b_desc, c_desc, d_desc]) {
                return s;
            }
            let mut algo = MatmulAlgo { data: [0; 8] };
            algo.data[0] = ALGO_TAG;
            results.write(HeuristicResult {
                algo,
                workspace_size: 0,
                state: Status::Success,
                waves_count: 1.0,
                reserved: [0; 4],
            });
            count.write(1);
        }
        Status::Success
    })
}

/// Reads a scalar: from the host, or from device memory in device pointer mode.
///
/// # Safety
/// In host mode `ptr` points to a readable f32.
unsafe fn scalar(func: &str, name: &str, ptr: *const c_void, on_device: bool) -> Result<f32, Status> {
    if ptr.is_null() {
        return Err(fail(func, Status::InvalidValue, &format!("{name} is NULL")));
    }
    if !on_device {
        // SAFETY: as the caller guarantees (unaligned reads are allowed in C).
        return Ok(unsafe { std::ptr::read_unaligned(ptr as *const f32) });
    }
    let memory = &crate::device::device().map_err(|e| fail(func, Status::NotInitialized, e))?.memory;
    let mut bytes = [0u8; 4];
    memory.read(ptr as u64, &mut bytes).map_err(|e| {
        fail(
            func,
            Status::ExecutionFailed,
            &format!("{name} (device pointer mode) at {:#x}: {e}", ptr as u64),
        )
    })?;
    Ok(f32::from_ne_bytes(bytes))
}

/// `D = act(alpha * op(A) op(B) + beta * C + bias)`, executed before returning.
///
/// # Safety
/// Handles null or live; `alpha` and `beta` point to f32s (host mode); A, B, C, D and the
/// bias are device addresses, which are checked.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtMatmul(
    handle: *mut Handle,
    desc: *mut MatmulDesc,
    alpha: *const c_void,
    a: *const c_void,
    a_desc: *mut MatrixLayout,
    b: *const c_void,
    b_desc: *mut MatrixLayout,
    beta: *const c_void,
    c: *const c_void,
    c_desc: *mut MatrixLayout,
    d: *mut c_void,
    d_desc: *mut MatrixLayout,
    _algo: *const MatmulAlgo,
    _workspace: *mut c_void,
    _workspace_size: usize,
    _stream: *mut c_void,
) -> Status {
    const F: &str = "cublasLtMatmul";
    guard(F, || {
        // SAFETY: every pointer as the caller guarantees.
        let run = || unsafe {
            object(F, "lightHandle", handle)?;
            let plan = checked(F, desc, [a_desc, b_desc, c_desc, d_desc])?;
            if std::ptr::eq(c, d) && (plan.c.ld, plan.c.stride) != (plan.d.ld, plan.d.stride) {
                return Err(fail(F, Status::InvalidValue, "C == D (in place) but Cdesc and Ddesc differ"));
            }
            let alpha = scalar(F, "alpha", alpha, plan.scalars_on_device)?;
            let beta = scalar(F, "beta", beta, plan.scalars_on_device)?;
            let device = crate::device::device().map_err(|e| fail(F, Status::NotInitialized, e))?;
            logger::trace(
                F,
                &format!(
                    "m {} n {} k {} batch {} trans {}{} {:?}x{:?}->{:?} alpha {alpha} beta {beta} bias {} act {:?}",
                    plan.m,
                    plan.n,
                    plan.k,
                    plan.batch,
                    if plan.trans_a { 'T' } else { 'N' },
                    if plan.trans_b { 'T' } else { 'N' },
                    plan.a.dtype,
                    plan.b.dtype,
                    plan.d.dtype,
                    plan.bias.is_some(),
                    plan.activation,
                ),
            );
            let ptrs = Pointers { a: a as u64, b: b as u64, c: c as u64, d: d as u64 };
            gemm::execute(&device.memory, &plan, ptrs, alpha, beta)
                .map_err(|e| fail(F, Status::ExecutionFailed, &e.0))
        };
        match run() {
            Ok(()) => Status::Success,
            Err(s) => s,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_layout_matches_cublaslt_h() {
        assert_eq!(size_of::<MatmulAlgo>(), 64);
        assert_eq!(size_of::<HeuristicResult>(), 96);
        assert_eq!(std::mem::offset_of!(HeuristicResult, workspace_size), 64);
        assert_eq!(std::mem::offset_of!(HeuristicResult, state), 72);
        assert_eq!(std::mem::offset_of!(HeuristicResult, waves_count), 76);
        assert_eq!(std::mem::offset_of!(HeuristicResult, reserved), 80);
    }
}
