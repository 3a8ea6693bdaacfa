//! Stream capture and graphs: `cuStreamBeginCapture_v2` .. `cuStreamEndCapture` record the
//! copies, sets and kernel launches issued to the stream instead of running them; the graph
//! is their list, and `cuGraphLaunch` replays it in order on a stream (or records it into
//! that stream's capture).
//!
//! As in CUDA, a launch's parameter values are copied when it is captured, while a copy's host
//! memory is read or written when the graph runs. Each recorded operation's device ranges are
//! checked at capture time; an invalid one fails its call and invalidates the capture
//! (`cuStreamEndCapture` then returns `CUDA_ERROR_STREAM_CAPTURE_INVALIDATED`).
//! Synchronising the capturing stream is `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED` and also
//! invalidates it. In `THREAD_LOCAL` and `GLOBAL` modes the capture must end on the thread
//! that began it; cross-stream capture (forking into other streams through events) and the
//! global mode's ban on unsafe calls from other threads are not modelled.

use std::ffi::{c_uint, c_ulonglong};
use std::sync::Arc;
use std::thread::ThreadId;

use super::errors::{CUresult, Failure, bail, guard, put};
use super::handles::Registry;
use super::init::context;
use super::ops::Op;
use super::stream::{stream_of, submit_all};
use super::{CUgraph, CUgraphExec, CUstream};
use crate::device::Device;

/// `CU_STREAM_CAPTURE_MODE_RELAXED`.
const RELAXED: c_uint = 2;

/// A capture in progress.
pub(crate) struct Capture {
    ops: Vec<Op>,
    mode: c_uint,
    thread: ThreadId,
    /// Why the capture was invalidated, if it was.
    invalidated: Option<String>,
}

impl Capture {
    /// Checks and records `ops`; an invalid one invalidates the capture.
    pub(crate) fn record(&mut self, device: &Device, ops: &[Op]) -> Result<(), Failure> {
        if let Some(why) = &self.invalidated {
            bail!(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "the stream's capture was invalidated: {why}");
        }
        for op in ops {
            if let Err(f) = op.validate(device) {
                self.invalidate(f.message.clone());
                return Err(f);
            }
        }
        self.ops.extend_from_slice(ops);
        Ok(())
    }

    pub(crate) fn invalidate(&mut self, why: String) {
        self.invalidated.get_or_insert(why);
    }
}

/// A captured graph: its operations in order.
pub(crate) struct Graph {
    ops: Arc<[Op]>,
}

pub(crate) static GRAPHS: Registry<Graph> = Registry::new("graph");
pub(crate) static GRAPH_EXECS: Registry<Graph> = Registry::new("graph instance");

/// Starts capturing on a stream (not the default stream).
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamBeginCapture_v2(hStream: CUstream, mode: c_uint) -> CUresult {
    guard("cuStreamBeginCapture_v2", || {
        context()?;
        if mode > RELAXED {
            bail!(CUDA_ERROR_INVALID_VALUE, "capture mode {mode}");
        }
        let stream = stream_of(hStream)?;
        if stream.default {
            bail!(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "the default stream cannot capture");
        }
        let mut state = stream.lock();
        if state.capture.is_some() {
            bail!(CUDA_ERROR_ILLEGAL_STATE, "the stream is already capturing");
        }
        state.capture =
            Some(Capture { ops: Vec::new(), mode, thread: std::thread::current().id(), invalidated: None });
        Ok(())
    })
}

/// Ends the capture and returns its graph (null and `CUDA_ERROR_STREAM_CAPTURE_INVALIDATED`
/// for an invalidated capture).
///
/// # Safety
/// `phGraph` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamEndCapture(hStream: CUstream, phGraph: *mut CUgraph) -> CUresult {
    guard("cuStreamEndCapture", || {
        context()?;
        if phGraph.is_null() {
            bail!(CUDA_ERROR_INVALID_VALUE, "phGraph is null");
        }
        let stream = stream_of(hStream)?;
        let mut state = stream.lock();
        let Some(capture) = state.capture.as_ref() else {
            bail!(CUDA_ERROR_ILLEGAL_STATE, "the stream is not capturing");
        };
        if capture.mode != RELAXED && capture.thread != std::thread::current().id() {
            bail!(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD, "the capture was begun on another thread");
        }
        let capture = state.capture.take().expect("checked above");
        if let Some(why) = capture.invalidated {
            put(phGraph, std::ptr::null_mut(), "phGraph")?;
            bail!(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "the capture was invalidated: {why}");
        }
        put(phGraph, GRAPHS.insert(Arc::new(Graph { ops: capture.ops.into() })), "phGraph")
    })
}

/// `CU_STREAM_CAPTURE_STATUS_NONE` (0), `_ACTIVE` (1) or `_INVALIDATED` (2).
///
/// # Safety
/// `captureStatus` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamIsCapturing(hStream: CUstream, captureStatus: *mut c_uint) -> CUresult {
    guard("cuStreamIsCapturing", || {
        context()?;
        let stream = stream_of(hStream)?;
        let status = match &stream.lock().capture {
            None => 0,
            Some(c) if c.invalidated.is_some() => 2,
            Some(_) => 1,
        };
        put(captureStatus, status, "captureStatus")
    })
}

/// `CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH` and `_DEVICE_LAUNCH`.
const AUTO_FREE_ON_LAUNCH: c_ulonglong = 1;
const DEVICE_LAUNCH: c_ulonglong = 4;

/// An instance of the graph (sharing its operations).
///
/// # Safety
/// `phGraphExec` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphInstantiateWithFlags(
    phGraphExec: *mut CUgraphExec,
    hGraph: CUgraph,
    flags: c_ulonglong,
) -> CUresult {
    guard("cuGraphInstantiateWithFlags", || {
        context()?;
        let graph = GRAPHS.get(hGraph)?;
        if flags & !0xf != 0
            || flags & (AUTO_FREE_ON_LAUNCH | DEVICE_LAUNCH) == AUTO_FREE_ON_LAUNCH | DEVICE_LAUNCH
        {
            bail!(CUDA_ERROR_INVALID_VALUE, "instantiate flags {flags:#x}");
        }
        if flags & DEVICE_LAUNCH != 0 {
            bail!(CUDA_ERROR_NOT_SUPPORTED, "device-launched graphs are not supported");
        }
        if phGraphExec.is_null() {
            bail!(CUDA_ERROR_INVALID_VALUE, "phGraphExec is null");
        }
        put(phGraphExec, GRAPH_EXECS.insert(Arc::new(Graph { ops: graph.ops.clone() })), "phGraphExec")
    })
}

/// Runs the graph's operations in order on the stream (or records them if it captures).
///
/// # Safety
/// The host memory the graph's copies name must be valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphLaunch(hGraphExec: CUgraphExec, hStream: CUstream) -> CUresult {
    guard("cuGraphLaunch", || {
        context()?;
        let exec = GRAPH_EXECS.get(hGraphExec)?;
        submit_all(hStream, &exec.ops)
    })
}

/// Nothing to upload: checks the handles.
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphUpload(hGraphExec: CUgraphExec, hStream: CUstream) -> CUresult {
    guard("cuGraphUpload", || {
        context()?;
        GRAPH_EXECS.get(hGraphExec)?;
        stream_of(hStream).map(drop)
    })
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphExecDestroy(hGraphExec: CUgraphExec) -> CUresult {
    guard("cuGraphExecDestroy", || {
        context()?;
        GRAPH_EXECS.remove(hGraphExec).map(drop)
    })
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphDestroy(hGraph: CUgraph) -> CUresult {
    guard("cuGraphDestroy", || {
        context()?;
        GRAPHS.remove(hGraph).map(drop)
    })
}

/// How many operations the graph holds (for tests).
pub fn graph_len(hGraph: CUgraph) -> Option<usize> {
    GRAPHS.get(hGraph).ok().map(|g| g.ops.len())
}
