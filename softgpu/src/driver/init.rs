//! Initialisation, the one device, its attributes, and the primary context.
//!
//! There is one device (ordinal 0) and one context, its primary context, which is current on
//! a host thread after `cuCtxSetCurrent` (a thread-local, as in CUDA). Calls that use the
//! device need `cuInit` first (`CUDA_ERROR_NOT_INITIALIZED`), a current context
//! (`CUDA_ERROR_INVALID_CONTEXT`) and no sticky fault (see [`super::errors`]). Releasing the
//! primary context to a count of zero makes it unusable until it is retained again, but its
//! allocations are kept: device memory belongs to the process's one [`Device`].

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::errors::{CUresult, Failure, bail, guard, put, sticky};
use super::{CUcontext, CUdevice};
use crate::device::{Device, DeviceSpec};

static INITIALIZED: AtomicBool = AtomicBool::new(false);
/// How many times the primary context is retained.
static PRIMARY_REFS: AtomicU32 = AtomicU32::new(0);
/// The primary context's handle.
pub const PRIMARY_CONTEXT: usize = 0x00c0_17e0;
/// The driver version reported: CUDA 12.9, the NVRTC whose PTX the device runs.
pub const DRIVER_VERSION: c_int = 12090;

thread_local! {
    /// This thread's current context (0: none).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The device, once `cuInit` has succeeded.
pub(crate) fn initialized() -> Result<&'static Device, Failure> {
    if !INITIALIZED.load(Ordering::Acquire) {
        bail!(CUDA_ERROR_NOT_INITIALIZED, "cuInit has not been called");
    }
    crate::device::device().map_err(Failure::invalid)
}

/// The device, for a call that uses the current context: initialised, a live context current
/// on this thread, and no sticky fault.
/// The device, for calls on a handle (a module, a function) that names its context, which the
/// driver accepts without a current context on the calling thread.
pub(crate) fn device_of_handle() -> Result<&'static Device, Failure> {
    let device = initialized()?;
    sticky()?;
    Ok(device)
}

pub(crate) fn context() -> Result<&'static Device, Failure> {
    let device = initialized()?;
    if CURRENT.with(Cell::get) != PRIMARY_CONTEXT {
        bail!(CUDA_ERROR_INVALID_CONTEXT, "no context is current on this thread (cuCtxSetCurrent)");
    }
    if PRIMARY_REFS.load(Ordering::Acquire) == 0 {
        bail!(CUDA_ERROR_INVALID_CONTEXT, "the current primary context was released");
    }
    sticky()?;
    Ok(device)
}

fn check_device(dev: CUdevice) -> Result<&'static Device, Failure> {
    let device = initialized()?;
    if dev != 0 {
        bail!(CUDA_ERROR_INVALID_DEVICE, "device {dev}: the software GPU has one device, 0");
    }
    Ok(device)
}

/// Initialises the driver: makes the device from the environment (`KILN_SOFTGPU_ARCH`,
/// `KILN_SOFTGPU_MEMORY`); an invalid environment is `CUDA_ERROR_INVALID_VALUE`.
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuInit(Flags: c_uint) -> CUresult {
    guard("cuInit", || {
        if Flags != 0 {
            bail!(CUDA_ERROR_INVALID_VALUE, "flags must be 0, not {Flags}");
        }
        crate::device::device().map_err(|e| {
            Failure::invalid(format!("the software GPU's environment is invalid: {e}")).reported()
        })?;
        INITIALIZED.store(true, Ordering::Release);
        Ok(())
    })
}

/// # Safety
/// `driverVersion` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDriverGetVersion(driverVersion: *mut c_int) -> CUresult {
    guard("cuDriverGetVersion", || put(driverVersion, DRIVER_VERSION, "driverVersion"))
}

/// The driver's private export tables, which NVIDIA's own libraries (NVRTC among them) look
/// up when a `libcuda.so.1` is on the loader path: the software GPU has none, and says so
/// with `CUDA_ERROR_NOT_SUPPORTED` and a null table, so NVRTC carries on without them
/// (without this symbol NVRTC 12.9 dereferences a null function pointer and crashes).
///
/// # Safety
/// `ppExportTable` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetExportTable(
    ppExportTable: *mut *const std::ffi::c_void,
    _pExportTableId: *const std::ffi::c_void,
) -> CUresult {
    if !ppExportTable.is_null() {
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { *ppExportTable = std::ptr::null() };
    }
    CUresult::CUDA_ERROR_NOT_SUPPORTED
}

/// # Safety
/// `count` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    guard("cuDeviceGetCount", || {
        initialized()?;
        put(count, 1, "count")
    })
}

/// # Safety
/// `device` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) -> CUresult {
    guard("cuDeviceGet", || {
        check_device(ordinal)?;
        put(device, 0, "device")
    })
}

/// The device's name, truncated to `len - 1` bytes and NUL-terminated.
///
/// # Safety
/// `name` must be null or point at `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    guard("cuDeviceGetName", || {
        let device = check_device(dev)?;
        if name.is_null() || len <= 0 {
            bail!(CUDA_ERROR_INVALID_VALUE, "name is null or len ({len}) is not positive");
        }
        let bytes = device.spec.name.as_bytes();
        let n = bytes.len().min(len as usize - 1);
        // SAFETY: the caller gives `len` writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), name as *mut u8, n);
            name.add(n).write(0);
        }
        Ok(())
    })
}

/// A fixed UUID (the device is always the same software device).
///
/// # Safety
/// `uuid` must be null or point at 16 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    guard("cuDeviceGetUuid", || {
        check_device(dev)?;
        put(uuid, *b"kiln-softgpu-000", "uuid")
    })
}

/// # Safety
/// `uuid` must be null or point at 16 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    unsafe { cuDeviceGetUuid(uuid, dev) }
}

/// # Safety
/// `bytes` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    guard("cuDeviceTotalMem_v2", || {
        let device = check_device(dev)?;
        put(bytes, device.spec.memory_bytes as usize, "bytes")
    })
}

/// The value of device attribute `attrib` (the `CUdevice_attribute` enum's numbers), or
/// `None` for one the software GPU does not model. Limits come from the [`DeviceSpec`]; the
/// rest are fixed values of an H100/A100-class part, or 0 for features it lacks (managed
/// memory, host mapping, cooperative and cluster launches, stream priorities).
pub fn device_attribute(spec: &DeviceSpec, attrib: u32) -> Option<i64> {
    let [bx, by, bz] = spec.max_block_dim;
    let [gx, gy, gz] = spec.max_grid_dim;
    Some(match attrib {
        1 => spec.max_threads_per_block as i64,
        2 => bx as i64,
        3 => by as i64,
        4 => bz as i64,
        5 => gx as i64,
        6 => gy as i64,
        7 => gz as i64,
        8 => spec.shared_per_block as i64,
        9 => 64 * 1024, // TOTAL_CONSTANT_MEMORY
        10 => spec.warp_size as i64,
        11 => i32::MAX as i64, // MAX_PITCH
        12 => spec.registers_per_block as i64,
        13 => 1_755_000, // CLOCK_RATE (kHz)
        14 => 512,       // TEXTURE_ALIGNMENT
        15 => 1,         // GPU_OVERLAP
        16 => spec.multiprocessors as i64,
        17 => 0,                // KERNEL_EXEC_TIMEOUT
        18 => 0,                // INTEGRATED
        19 => 0,                // CAN_MAP_HOST_MEMORY
        20 => 0,                // COMPUTE_MODE: default
        30 => 512,              // SURFACE_ALIGNMENT
        31 => 1,                // CONCURRENT_KERNELS
        32 => 0,                // ECC_ENABLED
        33..=35 => 0,           // PCI bus / device id, TCC driver
        36 => 2_619_000,        // MEMORY_CLOCK_RATE (kHz)
        37 => 5120,             // GLOBAL_MEMORY_BUS_WIDTH
        38 => 50 * 1024 * 1024, // L2_CACHE_SIZE
        39 => spec.max_threads_per_multiprocessor as i64,
        40 => 2,  // ASYNC_ENGINE_COUNT
        41 => 1,  // UNIFIED_ADDRESSING
        50 => 0,  // PCI_DOMAIN_ID
        51 => 32, // TEXTURE_PITCH_ALIGNMENT
        75 => spec.compute_capability.0 as i64,
        76 => spec.compute_capability.1 as i64,
        78 => 0,      // STREAM_PRIORITIES_SUPPORTED
        79 | 80 => 1, // GLOBAL / LOCAL_L1_CACHE_SUPPORTED
        81 => spec.shared_per_multiprocessor as i64,
        82 => spec.registers_per_multiprocessor as i64,
        83 => 0,      // MANAGED_MEMORY
        84 | 85 => 0, // MULTI_GPU_BOARD (group id)
        86 => 0,      // HOST_NATIVE_ATOMIC_SUPPORTED
        87 => 2,      // SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO
        88 | 89 => 0, // PAGEABLE_MEMORY_ACCESS, CONCURRENT_MANAGED_ACCESS
        90 => 1,      // COMPUTE_PREEMPTION_SUPPORTED
        91..=94 => 0, // host-pointer and stream memory operations
        95 | 96 => 0, // COOPERATIVE_LAUNCH (multi-device)
        97 => spec.shared_per_block_optin as i64,
        98 | 99 => 0,   // CAN_FLUSH_REMOTE_WRITES, HOST_REGISTER_SUPPORTED
        100..=105 => 0, // host page tables, VMM, IPC handle types
        106 => 32,      // MAX_BLOCKS_PER_MULTIPROCESSOR
        107..=110 => 0, // compression, persisting L2, RDMA with VMM
        111 => 1024,    // RESERVED_SHARED_MEMORY_PER_BLOCK
        112..=114 => 0, // sparse arrays, read-only host register, timeline semaphores
        115 => 1,       // MEMORY_POOLS_SUPPORTED (cuMemAllocAsync works)
        116..=119 => 0, // RDMA, mempool handle types
        120 => 0,       // CLUSTER_LAUNCH
        121..=135 => 0, // deferred mapping .. D3D12 CiG
        _ => return None,
    })
}

/// # Safety
/// `pi` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetAttribute(pi: *mut c_int, attrib: c_uint, dev: CUdevice) -> CUresult {
    guard("cuDeviceGetAttribute", || {
        let device = check_device(dev)?;
        let Some(v) = device_attribute(&device.spec, attrib) else {
            bail!(CUDA_ERROR_INVALID_VALUE, "device attribute {attrib} is not modelled by the software GPU");
        };
        put(pi, v.min(i32::MAX as i64) as c_int, "pi")
    })
}

/// Retains the primary context and returns its handle.
///
/// # Safety
/// `pctx` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    guard("cuDevicePrimaryCtxRetain", || {
        check_device(dev)?;
        put(pctx, PRIMARY_CONTEXT as CUcontext, "pctx")?;
        PRIMARY_REFS.fetch_add(1, Ordering::AcqRel);
        Ok(())
    })
}

/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    guard("cuDevicePrimaryCtxRelease_v2", || {
        check_device(dev)?;
        PRIMARY_REFS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).map_err(
            |_| Failure::new(CUresult::CUDA_ERROR_INVALID_CONTEXT, "the primary context is not retained"),
        )?;
        Ok(())
    })
}

/// # Safety
/// `pctx` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetCurrent(pctx: *mut CUcontext) -> CUresult {
    guard("cuCtxGetCurrent", || {
        initialized()?;
        put(pctx, CURRENT.with(Cell::get) as CUcontext, "pctx")
    })
}

/// Makes `ctx` current on this thread (null: none).
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    guard("cuCtxSetCurrent", || {
        initialized()?;
        let h = ctx as usize;
        if h != 0 && h != PRIMARY_CONTEXT {
            bail!(CUDA_ERROR_INVALID_CONTEXT, "{ctx:p} is not a context");
        }
        CURRENT.with(|c| c.set(h));
        Ok(())
    })
}

/// # Safety
/// `device` must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetDevice(device: *mut CUdevice) -> CUresult {
    guard("cuCtxGetDevice", || {
        context()?;
        put(device, 0, "device")
    })
}

/// All work has completed when it is issued, so this only reports the sticky error.
///
/// # Safety
/// None beyond the C API's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxSynchronize() -> CUresult {
    guard("cuCtxSynchronize", || context().map(|_| ()))
}

/// Stream priorities are not modelled: the range is [0, 0].
///
/// # Safety
/// The pointers must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetStreamPriorityRange(
    leastPriority: *mut c_int,
    greatestPriority: *mut c_int,
) -> CUresult {
    guard("cuCtxGetStreamPriorityRange", || {
        context()?;
        if !leastPriority.is_null() {
            put(leastPriority, 0, "leastPriority")?;
        }
        if !greatestPriority.is_null() {
            put(greatestPriority, 0, "greatestPriority")?;
        }
        Ok(())
    })
}

/// # Safety
/// The pointers must be null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    guard("cuMemGetInfo_v2", || {
        let device = context()?;
        let (f, t) = device.memory.info();
        put(free, f as usize, "free")?;
        put(total, t as usize, "total")
    })
}
