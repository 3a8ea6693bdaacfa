//! Exported version and status-name queries.
//!
//! The version reported is the cuBLASLt of CUDA 12.8 (12.8.4), the bindings cudarc is built
//! against here, so that callers that check versions see a library they expect.

use std::ffi::{c_char, c_int};

use super::abi::{fail, guard};
use super::types::Status;

/// cuBLASLt's version as `major * 10000 + minor * 100 + patch`.
pub const VERSION: (c_int, c_int, c_int) = (12, 8, 4);
/// The CUDA runtime version the library claims to be built with (`12080` = 12.8).
pub const CUDART_VERSION: usize = 12080;

#[unsafe(no_mangle)]
pub extern "C" fn cublasLtGetVersion() -> usize {
    (VERSION.0 * 10000 + VERSION.1 * 100 + VERSION.2) as usize
}

#[unsafe(no_mangle)]
pub extern "C" fn cublasLtGetCudartVersion() -> usize {
    CUDART_VERSION
}

/// `libraryPropertyType`: 0 major, 1 minor, 2 patch level.
///
/// # Safety
/// `value` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtGetProperty(kind: u32, value: *mut c_int) -> Status {
    const F: &str = "cublasLtGetProperty";
    guard(F, || {
        let v = match kind {
            0 => VERSION.0,
            1 => VERSION.1,
            2 => VERSION.2,
            other => return fail(F, Status::InvalidValue, &format!("unknown library property {other}")),
        };
        if value.is_null() {
            return fail(F, Status::InvalidValue, "value is NULL");
        }
        // SAFETY: non-null and writable, as the caller guarantees.
        unsafe { value.write(v) };
        Status::Success
    })
}

/// The status's enumerator name, a static string.
#[unsafe(no_mangle)]
pub extern "C" fn cublasLtGetStatusName(status: u32) -> *const c_char {
    Status::describe(status).0.as_ptr()
}

/// A short description of the status, a static string.
#[unsafe(no_mangle)]
pub extern "C" fn cublasLtGetStatusString(status: u32) -> *const c_char {
    Status::describe(status).1.as_ptr()
}
