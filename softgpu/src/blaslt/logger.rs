//! cuBLASLt's logger, reduced to what is useful here, and the exported functions that set it.
//!
//! Errors are always printed on stderr (one line naming the function and the reason), whatever
//! the logger settings: a status code alone rarely says what was wrong, and NVIDIA's library
//! is silent only because it cannot say more. With the error level enabled (mask bit 1) they
//! also go to the file opened by `cublasLtLoggerOpenFile`; with the trace level (bit 2) each
//! matmul's shape is logged, to that file or else to stderr.

use std::ffi::{CStr, c_char, c_int};
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::abi::{fail, guard};
use super::types::Status;

/// Mask bits, as cuBLASLt numbers its levels: 1 error, 2 trace, 4 hints, 8 info, 16 API trace.
const ERROR: i32 = 1;
const TRACE: i32 = 2;

static MASK: AtomicI32 = AtomicI32::new(0);
static DISABLED: AtomicBool = AtomicBool::new(false);
static FILE: Mutex<Option<File>> = Mutex::new(None);

fn enabled(bit: i32) -> bool {
    !DISABLED.load(Ordering::Relaxed) && MASK.load(Ordering::Relaxed) & bit != 0
}

fn to_file(line: &str) -> bool {
    let mut file = FILE.lock().unwrap_or_else(|p| p.into_inner());
    match file.as_mut() {
        Some(f) => {
            let _ = writeln!(f, "{line}");
            true
        }
        None => false,
    }
}

/// Reports an error of `func`.
pub fn error(func: &str, message: &str) {
    let line = format!("[kiln-softgpu cuBLASLt] {func}: {message}");
    eprintln!("{line}");
    if enabled(ERROR) {
        to_file(&line);
    }
}

/// Logs a call at the trace level.
pub fn trace(func: &str, message: &str) {
    if enabled(TRACE) {
        let line = format!("[kiln-softgpu cuBLASLt trace] {func}: {message}");
        if !to_file(&line) {
            eprintln!("{line}");
        }
    }
}

/// Level 0 (off) to 5 (API trace): enables every level up to `level`.
#[unsafe(no_mangle)]
pub extern "C" fn cublasLtLoggerSetLevel(level: c_int) -> Status {
    const F: &str = "cublasLtLoggerSetLevel";
    guard(F, || {
        if !(0..=5).contains(&level) {
            return fail(F, Status::InvalidValue, &format!("level {level} is not 0..=5"));
        }
        MASK.store((1 << level) - 1, Ordering::Relaxed);
        Status::Success
    })
}

/// Enables exactly the levels whose bits are set in `mask`.
#[unsafe(no_mangle)]
pub extern "C" fn cublasLtLoggerSetMask(mask: c_int) -> Status {
    const F: &str = "cublasLtLoggerSetMask";
    guard(F, || {
        if !(0..32).contains(&mask) {
            return fail(F, Status::InvalidValue, &format!("mask {mask:#x} has bits beyond the five levels"));
        }
        MASK.store(mask, Ordering::Relaxed);
        Status::Success
    })
}

/// Turns logging off for the rest of the process (errors still reach stderr).
#[unsafe(no_mangle)]
pub extern "C" fn cublasLtLoggerForceDisable() -> Status {
    DISABLED.store(true, Ordering::Relaxed);
    Status::Success
}

/// Sends the log to the file at `path` (created or truncated).
///
/// # Safety
/// `path` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cublasLtLoggerOpenFile(path: *const c_char) -> Status {
    const F: &str = "cublasLtLoggerOpenFile";
    guard(F, || {
        if path.is_null() {
            return fail(F, Status::InvalidValue, "logFile is NULL");
        }
        // SAFETY: a NUL-terminated string, as the caller guarantees.
        let path = unsafe { CStr::from_ptr(path) }.to_string_lossy().into_owned();
        match File::create(&path) {
            Ok(f) => {
                *FILE.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
                Status::Success
            }
            Err(e) => fail(F, Status::InvalidValue, &format!("cannot create {path:?}: {e}")),
        }
    })
}
