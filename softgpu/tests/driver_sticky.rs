//! Driver API: a faulting launch returns CUDA_ERROR_ILLEGAL_ADDRESS with the sanitizer's
//! report, and the error is then sticky. (Its own test binary: the sticky error lasts for the
//! rest of the process.)

mod driver_common;

use std::ffi::{CStr, c_char, c_void};

use driver_common::*;
use kiln_softgpu::driver::init::*;
use kiln_softgpu::driver::memory::*;
use kiln_softgpu::driver::stream::*;
use kiln_softgpu::driver::{CUresult, kiln_softgpu_last_error};
use kiln_softgpu::testing::kernel_ptx;

#[test]
fn fault_is_reported_and_sticky() {
    init();
    let (r, m) = load(&kernel_ptx(
        ".param .u64 out",
        "  .reg .b32 %r<2>;\n  .reg .b64 %rd<2>;\n  ld.param.u64 %rd1, [out];\n  ld.global.u32 %r1, [%rd1];\n  st.global.u32 [%rd1+64], %r1;\n  ret;",
    ));
    ok(r);
    let f = function(m, "k");
    let buf = alloc(64);
    htod(buf, &[7; 64]);
    let mut s = std::ptr::null_mut();
    unsafe { ok(cuStreamCreate(&mut s, 1)) };

    let msg =
        fails(launch(f, [1, 1, 1], [1, 1, 1], 0, s, &mut [arg(&buf)]), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
    assert!(msg.contains("kernel k, block (0, 0, 0), thread (0, 0, 0)"), "{msg}");
    assert!(msg.contains("st.global.u32") && msg.contains("PTX line"), "{msg}");
    assert!(msg.contains("past the end of allocation"), "{msg}");
    let mut report = [0 as c_char; 1024];
    let n = unsafe { kiln_softgpu_last_error(report.as_mut_ptr(), report.len()) };
    assert_eq!(n, msg.len());
    assert_eq!(unsafe { CStr::from_ptr(report.as_ptr()) }.to_str().unwrap(), msg);

    // Every later call that touches the device returns the same error.
    unsafe {
        let mut p = 0;
        let again = fails(cuMemAlloc_v2(&mut p, 16), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        assert!(again.contains("earlier kernel fault") && again.contains("st.global.u32"), "{again}");
        fails(cuCtxSynchronize(), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        fails(cuStreamSynchronize(s), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        let mut out = [0u8; 4];
        fails(cuMemcpyDtoH_v2(out.as_mut_ptr() as *mut c_void, buf, 4), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        fails(launch(f, [1, 1, 1], [1, 1, 1], 0, s, &mut [arg(&buf)]), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        fails(load(&kernel_ptx("", "  ret;")).0, CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        fails(cuMemFree_v2(buf), CUresult::CUDA_ERROR_ILLEGAL_ADDRESS);
        // Queries that do not touch the device still work.
        let mut v = 0;
        ok(cuDeviceGetAttribute(&mut v, 75, 0));
        assert_eq!(error_name(CUresult::CUDA_ERROR_ILLEGAL_ADDRESS), "CUDA_ERROR_ILLEGAL_ADDRESS");
    }
}
