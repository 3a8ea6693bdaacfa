//! `CUresult` codes, their names and descriptions (`cuGetErrorName`, `cuGetErrorString`), and
//! how an exported function turns a [`Failure`] into a code: the message is stored, per thread, for
//! [`kiln_softgpu_last_error`], printed to stderr when it reports a bug in the caller's kernel
//! or PTX, and a kernel fault becomes the context's *sticky* error.
//!
//! Sticky errors follow CUDA: after a kernel faults, the context is unusable and every later
//! call that touches the device returns the same code, for the rest of the process. The
//! software GPU reports the fault from `cuLaunchKernel` itself (CUDA reports it from a later
//! call, asynchronously), so the failing launch is the one named.

use std::cell::RefCell;
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// A CUDA driver API status code (the C `enum cudaError_enum`, 32 bits).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CUresult(pub u32);

macro_rules! codes {
    ($($name:ident = $value:expr, $text:expr;)*) => {
        #[allow(non_upper_case_globals)]
        impl CUresult {
            $(pub const $name: CUresult = CUresult($value);)*
        }

        /// (code, NUL-terminated name, NUL-terminated description) of every code this driver
        /// knows; the descriptions are this crate's own wording.
        static TABLE: &[Entry] = &[
            $(($value, unsafe { CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) },
                unsafe { CStr::from_bytes_with_nul_unchecked(concat!($text, "\0").as_bytes()) }),)*
        ];
    };
}

codes! {
    CUDA_SUCCESS = 0, "no error";
    CUDA_ERROR_INVALID_VALUE = 1, "an argument is out of range or a required pointer is null";
    CUDA_ERROR_OUT_OF_MEMORY = 2, "the device has too little free memory for the request";
    CUDA_ERROR_NOT_INITIALIZED = 3, "cuInit has not been called (successfully) yet";
    CUDA_ERROR_DEINITIALIZED = 4, "the driver is shutting down";
    CUDA_ERROR_PROFILER_DISABLED = 5, "profiling is disabled";
    CUDA_ERROR_STUB_LIBRARY = 34, "a stub driver library was loaded";
    CUDA_ERROR_NO_DEVICE = 100, "no device is present";
    CUDA_ERROR_INVALID_DEVICE = 101, "the device ordinal or handle does not name a device";
    CUDA_ERROR_INVALID_IMAGE = 200, "the module image is not something this driver can load";
    CUDA_ERROR_INVALID_CONTEXT = 201, "no valid context is current on this thread";
    CUDA_ERROR_CONTEXT_ALREADY_CURRENT = 202, "the context is already current";
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209, "the module has no code for this device";
    CUDA_ERROR_UNSUPPORTED_LIMIT = 215, "the limit is not supported";
    CUDA_ERROR_INVALID_PTX = 218, "the PTX could not be parsed or uses an instruction this device cannot run";
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222, "the PTX version is not supported";
    CUDA_ERROR_INVALID_SOURCE = 300, "the kernel source is invalid";
    CUDA_ERROR_FILE_NOT_FOUND = 301, "the file was not found";
    CUDA_ERROR_INVALID_HANDLE = 400, "the handle does not name a live object of the expected kind";
    CUDA_ERROR_ILLEGAL_STATE = 401, "the operation is not valid in the object's current state";
    CUDA_ERROR_NOT_FOUND = 500, "the named symbol was not found";
    CUDA_ERROR_NOT_READY = 600, "the work has not completed yet";
    CUDA_ERROR_ILLEGAL_ADDRESS = 700, "a kernel accessed memory outside every allocation (sticky)";
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701, "the launch needs more resources than the device has";
    CUDA_ERROR_LAUNCH_TIMEOUT = 702, "a kernel ran too long or can make no progress (sticky)";
    CUDA_ERROR_ASSERT = 710, "a kernel assertion failed (sticky)";
    CUDA_ERROR_ILLEGAL_INSTRUCTION = 715, "a kernel executed an illegal instruction or diverged at a barrier (sticky)";
    CUDA_ERROR_MISALIGNED_ADDRESS = 716, "a kernel accessed memory at a misaligned address (sticky)";
    CUDA_ERROR_INVALID_ADDRESS_SPACE = 717, "a kernel used an address in the wrong state space (sticky)";
    CUDA_ERROR_LAUNCH_FAILED = 719, "a kernel failed: uninitialized read, shared-memory race or trap (sticky)";
    CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE = 720, "the cooperative grid is too large";
    CUDA_ERROR_NOT_PERMITTED = 800, "the operation is not permitted";
    CUDA_ERROR_NOT_SUPPORTED = 801, "the operation is not supported by the software GPU";
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900, "the operation is not allowed while the stream is capturing";
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901, "the stream capture was invalidated by an earlier error";
    CUDA_ERROR_STREAM_CAPTURE_MERGE = 902, "two independent captures would merge";
    CUDA_ERROR_STREAM_CAPTURE_UNMATCHED = 903, "the capture was not begun in this stream";
    CUDA_ERROR_STREAM_CAPTURE_UNJOINED = 904, "the capture forked into a stream that was not joined back";
    CUDA_ERROR_STREAM_CAPTURE_ISOLATION = 905, "a dependency would cross the capture boundary";
    CUDA_ERROR_STREAM_CAPTURE_IMPLICIT = 906, "the operation would synchronize implicitly with the legacy stream";
    CUDA_ERROR_CAPTURED_EVENT = 907, "the event was recorded in a capturing stream";
    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD = 908, "the capture was not begun on this thread";
    CUDA_ERROR_TIMEOUT = 909, "the wait timed out";
    CUDA_ERROR_UNKNOWN = 999, "an internal error in the software GPU (a panic; see stderr)";
}

impl CUresult {
    /// The code's name, like `CUDA_ERROR_INVALID_VALUE`.
    pub fn name(self) -> &'static str {
        lookup(self).map_or("CUDA_ERROR_<unknown>", |(_, n, _)| n.to_str().unwrap_or(""))
    }

    /// Whether this is `CUDA_SUCCESS`.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Debug for CUresult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

fn lookup(code: CUresult) -> Option<&'static Entry> {
    TABLE.iter().find(|e| e.0 == code.0)
}

/// Why a call failed: the code to return and a message for a person.
#[derive(Debug)]
pub struct Failure {
    pub code: CUresult,
    pub message: String,
    /// Print the message to stderr (kernel faults, PTX that does not load, invalid launches).
    pub report: bool,
    /// A kernel fault: the context's error becomes sticky.
    pub sticky: bool,
}

impl Failure {
    pub fn new(code: CUresult, message: impl Into<String>) -> Self {
        Failure { code, message: message.into(), report: false, sticky: false }
    }

    /// `CUDA_ERROR_INVALID_VALUE` with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(CUresult::CUDA_ERROR_INVALID_VALUE, message)
    }

    /// The same failure, printed to stderr when returned.
    pub fn reported(mut self) -> Self {
        self.report = true;
        self
    }
}

/// `Err(Failure::new(code, format!(..)))` from the enclosing function.
macro_rules! bail {
    ($code:ident, $($fmt:tt)*) => {
        return Err($crate::driver::errors::Failure::new($crate::driver::errors::CUresult::$code, format!($($fmt)*)))
    };
}
pub(crate) use bail;

/// The first kernel fault's code (0: none) and message.
static STICKY: AtomicU32 = AtomicU32::new(0);
static STICKY_MESSAGE: Mutex<String> = Mutex::new(String::new());
thread_local! {
    /// The message of this thread's last failed call (per thread, like `errno`: a call on
    /// another thread cannot replace it between a failure and the read).
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn lock(m: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sticky error, if a kernel has faulted in this process.
pub(crate) fn sticky() -> Result<(), Failure> {
    match STICKY.load(Ordering::Acquire) {
        0 => Ok(()),
        code => Err(Failure::new(
            CUresult(code),
            format!("the context is unusable after an earlier kernel fault: {}", lock(&STICKY_MESSAGE)),
        )),
    }
}

/// The message of this thread's last failed call (empty if none).
pub fn last_error() -> String {
    LAST_ERROR.with_borrow(String::clone)
}

fn finish(function: &str, failure: Failure) -> CUresult {
    let Failure { code, message, report, sticky } = failure;
    if code == CUresult::CUDA_ERROR_NOT_READY {
        return code;
    }
    let message = format!("{function}: {} ({}): {message}", code.name(), code.0);
    if sticky {
        // The first fault stays the sticky one.
        let mut first = lock(&STICKY_MESSAGE);
        if STICKY.compare_exchange(0, code.0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            *first = message.clone();
        }
    }
    if report {
        eprintln!("kiln-softgpu: {message}");
    }
    LAST_ERROR.set(message);
    code
}

/// Runs an exported function's body: never unwinds into C (a panic is `CUDA_ERROR_UNKNOWN`),
/// and records the failure's message.
pub(crate) fn guard(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> CUresult {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CUresult::CUDA_SUCCESS,
        Ok(Err(f)) => finish(function, f),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            finish(
                function,
                Failure::new(CUresult::CUDA_ERROR_UNKNOWN, format!("internal panic: {what}")).reported(),
            )
        }
    }
}

/// Writes `value` through an out-pointer, or fails for a null one.
pub(crate) fn put<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        bail!(CUDA_ERROR_INVALID_VALUE, "{what} is null");
    }
    // SAFETY: the caller passes a writable pointer, as the CUDA API requires.
    unsafe { out.write(value) };
    Ok(())
}

type Entry = (u32, &'static CStr, &'static CStr);

fn describe(
    function: &str,
    error: CUresult,
    out: *mut *const c_char,
    pick: fn(&Entry) -> &'static CStr,
) -> CUresult {
    guard(function, || match lookup(error) {
        Some(e) => put(out, pick(e).as_ptr(), "pStr"),
        None => {
            let _ = put(out, std::ptr::null(), "pStr");
            bail!(CUDA_ERROR_INVALID_VALUE, "{} is not a CUresult code", error.0)
        }
    })
}

/// The code's name as a static NUL-terminated string.
///
/// # Safety
/// `pStr` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorName(error: CUresult, pStr: *mut *const c_char) -> CUresult {
    describe("cuGetErrorName", error, pStr, |e| e.1)
}

/// The code's description as a static NUL-terminated string.
///
/// # Safety
/// `pStr` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorString(error: CUresult, pStr: *mut *const c_char) -> CUresult {
    describe("cuGetErrorString", error, pStr, |e| e.2)
}

/// Copies the message of this thread's last failed call (NUL-terminated, truncated to `len - 1` bytes) into
/// `buf` and returns the message's full length in bytes; with a null `buf` or `len == 0` only
/// the length. For a kernel fault the message is the sanitizer's report: kernel, block,
/// thread, instruction, PTX line and source line.
///
/// # Safety
/// `buf` must be null or point at `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kiln_softgpu_last_error(buf: *mut c_char, len: usize) -> usize {
    catch_unwind(|| {
        let message = last_error();
        if !buf.is_null() && len > 0 {
            let n = message.len().min(len - 1);
            // SAFETY: the caller gives `len` writable bytes at `buf`.
            unsafe {
                std::ptr::copy_nonoverlapping(message.as_ptr(), buf as *mut u8, n);
                buf.add(n).write(0);
            }
        }
        message.len()
    })
    .unwrap_or(0)
}
