//! Opaque handles: every object the API hands out (stream, event, module, function, graph,
//! graph instance) is an `Arc` in a registry of its kind, named by a unique, never-reused
//! integer cast to the C pointer type. A stale, foreign or wrong-kind handle is therefore a
//! clean `CUDA_ERROR_INVALID_HANDLE`, never a dereference of freed memory.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::errors::{CUresult, Failure};

/// The next handle value; shared by all kinds so that no two objects ever share one. It starts
/// well above the special stream values 0x1 (legacy) and 0x2 (per-thread).
static NEXT: AtomicUsize = AtomicUsize::new(0x10_0000);

/// The live objects of one kind.
pub(crate) struct Registry<T> {
    kind: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Registry<T> {
    pub(crate) const fn new(kind: &'static str) -> Self {
        Registry { kind, live: Mutex::new(BTreeMap::new()) }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `value` under a fresh handle.
    pub(crate) fn insert(&self, value: Arc<T>) -> *mut c_void {
        let h = NEXT.fetch_add(0x10, Ordering::Relaxed);
        self.live().insert(h, value);
        h as *mut c_void
    }

    fn missing(&self, h: *mut c_void) -> Failure {
        Failure::new(CUresult::CUDA_ERROR_INVALID_HANDLE, format!("{h:p} is not a live {}", self.kind))
    }

    /// The object named by `h`.
    pub(crate) fn get(&self, h: *mut c_void) -> Result<Arc<T>, Failure> {
        self.live().get(&(h as usize)).cloned().ok_or_else(|| self.missing(h))
    }

    /// Removes the object named by `h` and returns it.
    pub(crate) fn remove(&self, h: *mut c_void) -> Result<Arc<T>, Failure> {
        self.live().remove(&(h as usize)).ok_or_else(|| self.missing(h))
    }
}
