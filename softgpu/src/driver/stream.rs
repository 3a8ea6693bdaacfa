//! Streams and events.
//!
//! Work issued to a stream runs at once, in the issuing thread, while the stream's lock is
//! held (see the module docs of [`super`]); while the stream captures, it is recorded instead
//! (see [`super::graph`]). The null stream, `CU_STREAM_LEGACY` and `CU_STREAM_PER_THREAD` are
//! all the one default stream, which cannot capture.
//!
//! An event records the host time at `cuEventRecord`: the stream's earlier work is complete
//! by then, so queries always succeed and `cuEventElapsedTime` is the wall-clock time between
//! two records (milliseconds). An event recorded in a capturing stream is a *captured* event
//! (`CUDA_ERROR_CAPTURED_EVENT` from query, synchronize and elapsed time) until recorded again
//! outside a capture.

use std::ffi::{c_float, c_int, c_uint};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use super::errors::{CUresult, Failure, bail, guard, put};
use super::graph::Capture;
use super::handles::Registry;
use super::init::context;
use super::ops::Op;
use super::{CUevent, CUstream};

/// A stream: whether it is capturing, and the lock held while its work runs.
pub(crate) struct Stream {
    pub(crate) default: bool,
    state: Mutex<StreamState>,
}

#[derive(Default)]
pub(crate) struct StreamState {
    /// The capture in progress, if any.
    pub(crate) capture: Option<Capture>,
}

impl Stream {
    fn new(default: bool) -> Self {
        Stream { default, state: Mutex::new(StreamState::default()) }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) static STREAMS: Registry<Stream> = Registry::new("stream");
static DEFAULT_STREAM: LazyLock<Arc<Stream>> = LazyLock::new(|| Arc::new(Stream::new(true)));

/// The stream named by `h`.
pub(crate) fn stream_of(h: CUstream) -> Result<Arc<Stream>, Failure> {
    match h as usize {
        0..=2 => Ok(DEFAULT_STREAM.clone()),
        _ => STREAMS.get(h),
    }
}

/// Runs `ops` in order on stream `h`, or records them if it captures.
pub(crate) fn submit_all(h: CUstream, ops: &[Op]) -> Result<(), Failure> {
    let device = context()?;
    let stream = stream_of(h)?;
    let mut state = stream.lock();
    if let Some(capture) = state.capture.as_mut() {
        return capture.record(device, ops);
    }
    for op in ops {
        op.run(device)?;
    }
    Ok(())
}

/// Runs `op` on stream `h`, or records it if the stream captures.
pub(crate) fn submit(h: CUstream, op: Op) -> Result<(), Failure> {
    submit_all(h, std::slice::from_ref(&op))
}

/// Fails if `stream` captures: the call would synchronise with work that has not run.
fn not_capturing(stream: &Stream, what: &str) -> Result<(), Failure> {
    let mut state = stream.lock();
    if let Some(c) = state.capture.as_mut() {
        c.invalidate(format!("{what} on the capturing stream"));
        bail!(
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
            "{what} is not allowed while the stream captures; the capture is invalidated"
        );
    }
    Ok(())
}

/// `CU_STREAM_DEFAULT` (0) or `CU_STREAM_NON_BLOCKING` (1); both behave alike here.
///
/// # Safety
/// `phStream` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamCreate(phStream: *mut CUstream, Flags: c_uint) -> CUresult {
    guard("cuStreamCreate", || {
        context()?;
        if Flags > 1 {
            bail!(
                CUDA_ERROR_INVALID_VALUE,
                "stream flags {Flags:#x} are not CU_STREAM_DEFAULT or CU_STREAM_NON_BLOCKING"
            );
        }
        if phStream.is_null() {
            bail!(CUDA_ERROR_INVALID_VALUE, "phStream is null");
        }
        put(phStream, STREAMS.insert(Arc::new(Stream::new(false))), "phStream")
    })
}

/// As [`cuStreamCreate`]; priorities are not modelled.
///
/// # Safety
/// `phStream` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    phStream: *mut CUstream,
    flags: c_uint,
    _priority: c_int,
) -> CUresult {
    unsafe { cuStreamCreate(phStream, flags) }
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamDestroy_v2(hStream: CUstream) -> CUresult {
    guard("cuStreamDestroy_v2", || {
        context()?;
        if (hStream as usize) <= 2 {
            bail!(CUDA_ERROR_INVALID_HANDLE, "the default stream cannot be destroyed");
        }
        STREAMS.remove(hStream).map(drop)
    })
}

/// The stream's work is complete; fails while it captures.
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamSynchronize(hStream: CUstream) -> CUresult {
    guard("cuStreamSynchronize", || {
        context()?;
        not_capturing(&*stream_of(hStream)?, "cuStreamSynchronize")
    })
}

/// Always `CUDA_SUCCESS`: the work is done.
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamQuery(hStream: CUstream) -> CUresult {
    guard("cuStreamQuery", || {
        context()?;
        not_capturing(&*stream_of(hStream)?, "cuStreamQuery")
    })
}

/// Checks the handles; the event's work is already complete.
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamWaitEvent(hStream: CUstream, hEvent: CUevent, Flags: c_uint) -> CUresult {
    guard("cuStreamWaitEvent", || {
        context()?;
        stream_of(hStream)?;
        EVENTS.get(hEvent)?;
        if Flags > 1 {
            bail!(CUDA_ERROR_INVALID_VALUE, "wait flags {Flags:#x}");
        }
        Ok(())
    })
}

/// `CU_EVENT_DISABLE_TIMING`.
const DISABLE_TIMING: c_uint = 2;

pub(crate) struct Event {
    flags: c_uint,
    state: Mutex<EventState>,
}

#[derive(Default)]
struct EventState {
    /// When it was last recorded outside a capture.
    recorded: Option<Instant>,
    /// Last recorded in a capturing stream.
    captured: bool,
}

impl Event {
    fn state(&self) -> MutexGuard<'_, EventState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) static EVENTS: Registry<Event> = Registry::new("event");

/// # Safety
/// `phEvent` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventCreate(phEvent: *mut CUevent, Flags: c_uint) -> CUresult {
    guard("cuEventCreate", || {
        context()?;
        if Flags & !0x7 != 0 {
            bail!(CUDA_ERROR_INVALID_VALUE, "event flags {Flags:#x}");
        }
        if phEvent.is_null() {
            bail!(CUDA_ERROR_INVALID_VALUE, "phEvent is null");
        }
        put(phEvent, EVENTS.insert(Arc::new(Event { flags: Flags, state: Mutex::default() })), "phEvent")
    })
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventDestroy_v2(hEvent: CUevent) -> CUresult {
    guard("cuEventDestroy_v2", || {
        context()?;
        EVENTS.remove(hEvent).map(drop)
    })
}

/// Records the current host time (the stream's earlier work is complete).
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventRecord(hEvent: CUevent, hStream: CUstream) -> CUresult {
    guard("cuEventRecord", || {
        context()?;
        let event = EVENTS.get(hEvent)?;
        let stream = stream_of(hStream)?;
        let capturing = stream.lock().capture.is_some();
        let mut s = event.state();
        s.captured = capturing;
        if !capturing {
            s.recorded = Some(Instant::now());
        }
        Ok(())
    })
}

fn completed(hEvent: CUevent) -> Result<Arc<Event>, Failure> {
    context()?;
    let event = EVENTS.get(hEvent)?;
    if event.state().captured {
        bail!(CUDA_ERROR_CAPTURED_EVENT, "the event {hEvent:p} was recorded in a capturing stream");
    }
    Ok(event)
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventSynchronize(hEvent: CUevent) -> CUresult {
    guard("cuEventSynchronize", || completed(hEvent).map(drop))
}

/// `CUDA_SUCCESS`: recorded work is always complete.
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventQuery(hEvent: CUevent) -> CUresult {
    guard("cuEventQuery", || completed(hEvent).map(drop))
}

/// Host milliseconds between the two records (negative if `hEnd` was recorded first).
///
/// # Safety
/// `pMilliseconds` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventElapsedTime(
    pMilliseconds: *mut c_float,
    hStart: CUevent,
    hEnd: CUevent,
) -> CUresult {
    guard("cuEventElapsedTime", || {
        let (start, end) = (completed(hStart)?, completed(hEnd)?);
        if (start.flags | end.flags) & DISABLE_TIMING != 0 {
            bail!(CUDA_ERROR_INVALID_HANDLE, "an event was created with CU_EVENT_DISABLE_TIMING");
        }
        let (Some(t0), Some(t1)) = (start.state().recorded, end.state().recorded) else {
            bail!(CUDA_ERROR_INVALID_HANDLE, "an event has not been recorded");
        };
        let ms = match t1.checked_duration_since(t0) {
            Some(d) => d.as_secs_f64() * 1e3,
            None => -(t0.duration_since(t1).as_secs_f64() * 1e3),
        };
        put(pMilliseconds, ms as c_float, "pMilliseconds")
    })
}

/// The same as [`cuEventElapsedTime`] (the CUDA 13 name).
///
/// # Safety
/// As [`cuEventElapsedTime`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuEventElapsedTime_v2(
    pMilliseconds: *mut c_float,
    hStart: CUevent,
    hEnd: CUevent,
) -> CUresult {
    unsafe { cuEventElapsedTime(pMilliseconds, hStart, hEnd) }
}
