//! Driver API behaviour that depends on the process: calls before cuInit, a device with little
//! memory (out of memory), and an invalid environment (in a child process). One test, since
//! the device is made once per process.

mod driver_common;

use std::process::Command;

use driver_common::*;
use kiln_softgpu::driver::CUresult;
use kiln_softgpu::driver::init::*;
use kiln_softgpu::driver::memory::*;

const CHILD: &str = "KILN_SOFTGPU_TEST_BAD_ENV_CHILD";

#[test]
fn before_init_out_of_memory_and_bad_environment() {
    if std::env::var_os(CHILD).is_some() {
        // The child: an unmodelled architecture makes cuInit fail with a message.
        let msg = unsafe { fails(cuInit(0), CUresult::CUDA_ERROR_INVALID_VALUE) };
        assert!(msg.contains("KILN_SOFTGPU_ARCH"), "{msg}");
        println!("child ok");
        return;
    }
    unsafe {
        let mut p = 0;
        fails(cuMemAlloc_v2(&mut p, 16), CUresult::CUDA_ERROR_NOT_INITIALIZED);
        let mut n = 0;
        fails(cuDeviceGetCount(&mut n), CUresult::CUDA_ERROR_NOT_INITIALIZED);
        let mut version = 0;
        ok(cuDriverGetVersion(&mut version));
        fails(cuInit(1), CUresult::CUDA_ERROR_INVALID_VALUE);

        // SAFETY: the only test of this binary, before any thread reads the environment.
        std::env::set_var("KILN_SOFTGPU_MEMORY", "1M");
        init();
        let (mut free, mut total) = (0, 0);
        ok(cuMemGetInfo_v2(&mut free, &mut total));
        assert_eq!((free, total), (1 << 20, 1 << 20));
        let a = alloc(512 * 1024);
        let msg = fails(cuMemAlloc_v2(&mut p, 768 * 1024), CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        assert!(msg.contains("out of device memory"), "{msg}");
        fails(cuMemAllocAsync(&mut p, 768 * 1024, std::ptr::null_mut()), CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        ok(cuMemGetInfo_v2(&mut free, &mut total));
        assert_eq!(free, 512 * 1024);
        ok(cuMemFree_v2(a));
        let b = alloc(768 * 1024);
        ok(cuMemFree_v2(b));

        // A released primary context is no longer usable.
        ok(cuDevicePrimaryCtxRelease_v2(0));
        fails(cuMemAlloc_v2(&mut p, 16), CUresult::CUDA_ERROR_INVALID_CONTEXT);
        fails(cuDevicePrimaryCtxRelease_v2(0), CUresult::CUDA_ERROR_INVALID_CONTEXT);
        let mut ctx = std::ptr::null_mut();
        ok(cuDevicePrimaryCtxRetain(&mut ctx, 0));
        ok(cuMemAlloc_v2(&mut p, 16));
    }

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "before_init_out_of_memory_and_bad_environment", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("KILN_SOFTGPU_ARCH", "70")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("child ok"), "{text}");
}
