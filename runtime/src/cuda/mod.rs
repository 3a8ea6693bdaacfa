//! The CUDA backend: one [`CudaDevice`] per GPU ordinal, tensors in device memory
//! ([`CudaStorage`]), and one module per family of ops that enqueues work on the device.
//!
//! # Design
//! - **Registry**: [`device`] opens a GPU once per process (a `Mutex<HashMap>` of
//!   `Arc<CudaDevice>`): its primary context, one stream, a cuBLASLt handle, the caching
//!   [`Allocator`](alloc::Allocator) and the kernel modules (loaded per family on first use).
//!   Opening never panics: no driver, no device, a missing cuBLASLt are each
//!   [`Error::CudaUnavailable`] (cudarc panics if asked to load a missing library, so each
//!   library's presence is checked first).
//! - **One stream per device**: every op enqueues on it and returns at once; nothing in a
//!   forward waits for the GPU. Only downloads ([`crate::Tensor::to_vec_f32`],
//!   `to_device(Cpu)`) and uploads from host memory synchronise. Because all work is ordered on
//!   the one stream, cudarc's per-buffer event tracking is switched off (it would record two
//!   events per argument of every launch).
//! - **Caching allocator**: op outputs come from size-bucketed free lists ([`alloc`]); a
//!   dropped [`CudaStorage`] returns its buffer there. Weights are allocated at their exact
//!   size and uploaded once: a tensor is immutable and `Arc`-shared, so an uploaded weight stays
//!   uploaded for as long as any clone of it lives.
//! - **Poisoning** (tests): with [`CudaDevice::set_poison`] (or `KILN_CUDA_POISON=1` at open),
//!   every op output is filled with `0xFF` bytes before the op runs, a NaN in f32, f16 and
//!   bf16, so an element a kernel forgets to write shows up as NaN.
//!
//! # Dtypes
//! Ops run on bf16 and f16 with f32 accumulation. f32 tensors can be stored, uploaded,
//! downloaded, cast and moved by the layout ops (narrow, concat, permute: bitwise copies) (for
//! the VAE's upcast and for reading results); an op without an f32 kernel returns
//! [`Error::Unsupported`] naming the op.

pub mod alloc;

pub use kiln_kernels::skip_gpu_test;
pub(crate) mod attention;
pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod modules;
pub(crate) mod norm;
mod storage;
mod strided_gemm;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublaslt::CudaBlasLT;
use cudarc::driver::sys::CUresult;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DriverError};

pub use alloc::MemoryStats;
pub use storage::CudaStorage;
pub(crate) use storage::{Elem, operand};

use crate::{DType, Device, Error, Result};

/// One open GPU: context, stream, cuBLASLt, allocator and kernel modules.
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    compute_capability: (i32, i32),
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlasLT>,
    alloc: alloc::Allocator,
    modules: modules::Modules,
    poison: AtomicBool,
    // Declared last so it is dropped last (the others hold clones of it anyway).
    ctx: Arc<CudaContext>,
}

impl fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CudaDevice({}, {}, sm_{}{})",
            self.ordinal, self.name, self.compute_capability.0, self.compute_capability.1
        )
    }
}

/// The open devices, by ordinal.
fn registry() -> &'static Mutex<HashMap<usize, Arc<CudaDevice>>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
    DEVICES.get_or_init(Default::default)
}

/// The CUDA device `ordinal`, opened on first use and shared afterwards.
///
/// Errors (never panics): [`Error::CudaUnavailable`] when there is no driver (`libcuda.so`),
/// no GPU, no GPU of that ordinal, or no cuBLASLt library; [`Error::Cuda`] when the driver fails
/// to create the context or stream; [`Error::OutOfMemory`] when cuBLASLt's workspace does not fit.
/// A failed open is not remembered: the next call tries again.
pub fn device(ordinal: usize) -> Result<Arc<CudaDevice>> {
    let mut devices = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dev) = devices.get(&ordinal) {
        return Ok(dev.clone());
    }
    let dev = Arc::new(CudaDevice::open(ordinal)?);
    devices.insert(ordinal, dev.clone());
    Ok(dev)
}

impl CudaDevice {
    fn open(ordinal: usize) -> Result<CudaDevice> {
        let unavailable = |reason: String| Error::CudaUnavailable { ordinal, reason };
        // SAFETY: only tries to dlopen the driver library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(unavailable("no CUDA driver (libcuda.so) found".into()));
        }
        let count = CudaContext::device_count().map_err(|e| match e.0 {
            CUresult::CUDA_ERROR_NO_DEVICE => unavailable("no CUDA device (CUDA_ERROR_NO_DEVICE)".into()),
            _ => unavailable(format!("the driver failed to initialise: {}", driver_msg(&e))),
        })?;
        if ordinal >= usize::try_from(count).unwrap_or(0) {
            return Err(unavailable(format!("no such device: this machine has {count} CUDA device(s)")));
        }
        let device = Device::Cuda(ordinal);
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| driver_error("open", device, "cuDevicePrimaryCtxRetain", e))?;
        // SAFETY: nothing has been allocated in this context by kiln yet, and every kiln buffer
        // is used on the one stream below only, so stream order replaces per-buffer events.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| driver_error("open", device, "cuStreamCreate", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let compute_capability =
            ctx.compute_capability().map_err(|e| driver_error("open", device, "cuDeviceGetAttribute", e))?;
        // SAFETY: only tries to dlopen the library.
        if !unsafe { cudarc::cublaslt::sys::is_culib_present() } {
            return Err(unavailable(
                "cuBLASLt (libcublasLt.so) not found on the loader path; install the CUDA toolkit's \
                 libraries or add pip's nvidia/cublas/lib folder to LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        // cuBLASLt's workspace (32 MiB on Hopper) is allocated by cudarc, which panics if that
        // fails; check that much memory is free first so that case is a typed error.
        let (free, _) = ctx.mem_get_info().map_err(|e| driver_error("open", device, "cuMemGetInfo", e))?;
        const BLAS_WORKSPACE: usize = 32 << 20;
        if free < BLAS_WORKSPACE {
            return Err(Error::OutOfMemory {
                device,
                op: "open (cuBLASLt workspace)",
                bytes: BLAS_WORKSPACE,
            });
        }
        let blas = CudaBlasLT::new(stream.clone()).map_err(|e| Error::Cuda {
            op: "open",
            device,
            message: format!("cublasLtCreate failed: {e:?}"),
        })?;
        let poison = std::env::var("KILN_CUDA_POISON").is_ok_and(|v| v == "1");
        Ok(CudaDevice {
            ordinal,
            name,
            compute_capability,
            alloc: alloc::Allocator::new(stream.clone()),
            modules: modules::Modules::new(device),
            blas: Mutex::new(blas),
            stream,
            poison: AtomicBool::new(poison),
            ctx,
        })
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// This device as a [`Device`].
    pub fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    /// The GPU's name, as the driver reports it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compute capability `(major, minor)`: `(9, 0)` for an H100/H200.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// The stream every op of this device enqueues on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits for all work enqueued on the device (benches time with it; ops never call it).
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_error("synchronize", self.device(), "cuStreamSynchronize", e))
    }

    /// Device memory free for new allocations, in bytes (`cuMemGetInfo`; the caching
    /// allocator's cached blocks count as used).
    pub fn free_memory(&self) -> Result<u64> {
        let (free, _) = self
            .ctx
            .mem_get_info()
            .map_err(|e| driver_error("free_memory", self.device(), "cuMemGetInfo", e))?;
        Ok(free as u64)
    }

    /// The caching allocator's counters.
    pub fn memory_stats(&self) -> MemoryStats {
        self.alloc.stats()
    }

    /// Restarts the allocator's peak counter from the current use.
    pub fn reset_peak_memory(&self) {
        self.alloc.reset_peak()
    }

    /// Returns every cached (free) buffer to the driver.
    pub fn free_cache(&self) {
        self.alloc.free_cache()
    }

    /// Fills every op output with `0xFF` bytes (NaN in f32, f16 and bf16) before the op writes
    /// it, so the tests catch elements a kernel leaves unwritten. Off by default (it costs a
    /// memset per op); `KILN_CUDA_POISON=1` turns it on when the device is opened.
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed)
    }

    /// A tensor of `shape` and `dtype` on this device from the caching allocator, as ops
    /// allocate their outputs: its contents are undefined (all NaN when poisoning is on). For
    /// tests of the allocator and of poisoning; model code builds tensors with ops.
    pub fn alloc_tensor(self: &Arc<Self>, shape: &[usize], dtype: DType) -> Result<crate::Tensor> {
        let len = shape.iter().product();
        crate::Tensor::from_cuda_storage(CudaStorage::alloc(self, dtype, len, "alloc_tensor")?, shape)
    }

    /// Whether op outputs are poisoned (see [`CudaDevice::set_poison`]).
    pub fn poison(&self) -> bool {
        self.poison.load(Ordering::Relaxed)
    }

    /// The entry point `entry` of kernel `family`, for `op`; the kernel modules are compiled
    /// and loaded on the first call.
    pub(crate) fn function(
        &self,
        op: &'static str,
        family: kiln_kernels::Family,
        entry: &str,
    ) -> Result<CudaFunction> {
        self.modules.function(op, &self.ctx, family, entry)
    }

    /// Makes this device's context current on the calling thread (cuBLASLt and launches on a
    /// thread that has never touched the device need it).
    pub(crate) fn bind(&self, op: &'static str) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| driver_error(op, self.device(), "cuCtxSetCurrent", e))
    }
}

/// The driver's name and description of an error.
pub(crate) fn driver_msg(e: &DriverError) -> String {
    let name =
        e.error_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    let text = e.error_string().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{name} ({text})")
}

/// An [`Error::Cuda`] for a failed driver `call` in `op`.
pub(crate) fn driver_error(op: &'static str, device: Device, call: &str, e: DriverError) -> Error {
    Error::Cuda { op, device, message: format!("{call} failed: {}", driver_msg(&e)) }
}

/// Runs `f` with the typed element of `dtype` for the ops that have bf16 and f16 kernels; f32
/// is [`Error::Unsupported`].
macro_rules! dispatch_half {
    ($op:expr, $dtype:expr, $device:expr, |$t:ident| $body:expr) => {
        match $dtype {
            $crate::DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            $crate::DType::F16 => {
                type $t = half::f16;
                $body
            }
            $crate::DType::F32 => Err($crate::Error::unsupported(
                $op,
                $crate::DType::F32,
                $device,
                "CUDA kernels exist for bf16 and f16 only (f32 is for storage, transfers and casts); \
                 cast with to_dtype first",
            )),
        }
    };
}
pub(crate) use dispatch_half;

/// The kiln-kernels storage type of `T` (bf16 or f16).
pub(crate) fn kernel_dtype<T: kiln_kernels::launch::KernelElem>() -> kiln_kernels::KernelDType {
    T::DTYPE
}

/// Maps a launcher's error: refused dimensions are [`Error::Unsupported`], a driver failure is
/// [`Error::Cuda`].
pub(crate) fn launch_error(
    op: &'static str,
    dtype: DType,
    device: Device,
) -> impl Fn(kiln_kernels::launch::LaunchError) -> Error {
    use kiln_kernels::launch::LaunchError;
    move |e| match e {
        LaunchError::Unsupported { .. } => Error::unsupported(op, dtype, device, e.to_string()),
        LaunchError::Driver { kernel, source } => driver_error(op, device, kernel, source),
    }
}
