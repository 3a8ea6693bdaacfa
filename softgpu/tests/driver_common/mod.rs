//! Helpers for the driver API tests: they call the exported `extern "C"` functions directly.
#![allow(dead_code)]

use std::ffi::{CString, c_void};

use kiln_softgpu::driver::errors::*;
use kiln_softgpu::driver::init::*;
use kiln_softgpu::driver::memory::*;
use kiln_softgpu::driver::module::*;
use kiln_softgpu::driver::{CUdeviceptr, CUfunction, CUmodule, CUresult, CUstream, last_error};

/// Panics with the driver's message unless `r` is success.
#[track_caller]
pub fn ok(r: CUresult) {
    assert!(r.is_ok(), "{r:?}: {}", last_error());
}

/// Asserts `r` is `code`, returning the last error message.
#[track_caller]
pub fn fails(r: CUresult, code: CUresult) -> String {
    assert_eq!(r, code, "last error: {}", last_error());
    last_error()
}

/// cuInit, retain the primary context and make it current on this thread.
pub fn init() {
    unsafe {
        ok(cuInit(0));
        let mut ctx = std::ptr::null_mut();
        ok(cuDevicePrimaryCtxRetain(&mut ctx, 0));
        ok(cuCtxSetCurrent(ctx));
    }
}

pub fn alloc(bytes: usize) -> CUdeviceptr {
    let mut p = 0;
    unsafe { ok(cuMemAlloc_v2(&mut p, bytes)) };
    p
}

pub fn htod(dst: CUdeviceptr, data: &[u8]) {
    unsafe { ok(cuMemcpyHtoD_v2(dst, data.as_ptr() as *const c_void, data.len())) };
}

pub fn dtoh(src: CUdeviceptr, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    unsafe { ok(cuMemcpyDtoH_v2(out.as_mut_ptr() as *mut c_void, src, len)) };
    out
}

pub fn words(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
}

pub fn bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Loads PTX text, returning the code and the module.
pub fn load(ptx: &str) -> (CUresult, CUmodule) {
    let text = CString::new(ptx).unwrap();
    let mut m = std::ptr::null_mut();
    let r = unsafe { cuModuleLoadData(&mut m, text.as_ptr() as *const c_void) };
    (r, m)
}

pub fn function(m: CUmodule, name: &str) -> CUfunction {
    let name = CString::new(name).unwrap();
    let mut f = std::ptr::null_mut();
    unsafe { ok(cuModuleGetFunction(&mut f, m, name.as_ptr())) };
    f
}

/// Launches `f` with the parameter values pointed at by `params`.
pub fn launch(
    f: CUfunction,
    grid: [u32; 3],
    block: [u32; 3],
    shared: u32,
    stream: CUstream,
    params: &mut [*mut c_void],
) -> CUresult {
    unsafe {
        kiln_softgpu::driver::launch::cuLaunchKernel(
            f,
            grid[0],
            grid[1],
            grid[2],
            block[0],
            block[1],
            block[2],
            shared,
            stream,
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
}

/// A pointer to `v` for `kernelParams`.
pub fn arg<T>(v: &T) -> *mut c_void {
    v as *const T as *mut c_void
}

/// The name of a code, through cuGetErrorName.
pub fn error_name(code: CUresult) -> String {
    let mut p = std::ptr::null();
    unsafe {
        ok(cuGetErrorName(code, &mut p));
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}
