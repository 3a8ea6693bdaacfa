//! The CUDA driver API of the software GPU, exported from `libkiln_softgpu.so` under the C
//! names cudarc resolves (see `make-libdir.sh` for the `libcuda.so` links), so kiln runs on it
//! unchanged.
//!
//! **Execution model.** Every operation runs synchronously, to completion, when it is issued:
//! a kernel launch returns after the grid has run, an "async" copy after the bytes have moved.
//! Streams are therefore trivially ordered (each stream also holds a lock while an operation
//! runs, so two host threads issuing to one stream are serialised), `cuStreamSynchronize`,
//! `cuEventSynchronize` and `cuCtxSynchronize` only report errors, and events time host
//! wall-clock intervals between their records. Device memory belongs to the process's one
//! [`crate::device::Device`]; host pointers given to copies are ordinary host memory.
//!
//! **Errors.** Every exported function catches panics (`CUDA_ERROR_UNKNOWN`), checks its
//! pointers and handles, and records a message for [`errors::kiln_softgpu_last_error`]. A
//! kernel fault is printed to stderr with the sanitizer's report, returned by `cuLaunchKernel`
//! itself, and then sticky (see [`errors`]).
//!
//! **Stream capture** records the copies, sets and launches issued to a capturing stream
//! (launch parameters copied at capture time, host pointers kept, as CUDA does) and
//! `cuGraphLaunch` replays them in order (see [`graph`]).
//!
//! The modules by area: [`errors`] (codes, sticky errors), [`init`] (device, attributes,
//! context), [`memory`] (allocation, copies, sets), [`module`] (PTX modules, functions and
//! their attributes), [`launch`], [`stream`] (streams, events), [`graph`] (capture and
//! replay), [`ops`] (the operations streams run or record), `handles`.

#![allow(non_snake_case, clippy::missing_safety_doc)]

use std::ffi::{c_int, c_void};

pub mod errors;
pub mod graph;
pub(crate) mod handles;
pub mod init;
pub mod launch;
pub mod memory;
pub mod module;
pub mod ops;
pub mod stream;

pub use errors::{CUresult, kiln_softgpu_last_error, last_error};

/// A device ordinal-like handle (always 0).
pub type CUdevice = c_int;
/// A device address.
pub type CUdeviceptr = u64;
/// A context (only the primary context exists).
pub type CUcontext = *mut c_void;
/// A stream; null, `CU_STREAM_LEGACY` (0x1) and `CU_STREAM_PER_THREAD` (0x2) are the default
/// stream.
pub type CUstream = *mut c_void;
pub type CUevent = *mut c_void;
pub type CUmodule = *mut c_void;
pub type CUfunction = *mut c_void;
pub type CUgraph = *mut c_void;
pub type CUgraphExec = *mut c_void;
