//! Driver API: initialisation, device attributes, contexts, memory, copies, sets and events.

mod driver_common;

use std::ffi::{CStr, c_char, c_void};

use driver_common::*;
use kiln_softgpu::driver::errors::*;
use kiln_softgpu::driver::init::*;
use kiln_softgpu::driver::memory::*;
use kiln_softgpu::driver::stream::*;
use kiln_softgpu::driver::{CUresult, kiln_softgpu_last_error};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.random()).collect()
}

#[test]
fn device_queries_and_attributes() {
    init();
    unsafe {
        let (mut version, mut count, mut dev) = (0, 0, -1);
        ok(cuDriverGetVersion(&mut version));
        assert!(version >= 12080);
        ok(cuDeviceGetCount(&mut count));
        assert_eq!(count, 1);
        ok(cuDeviceGet(&mut dev, 0));
        assert_eq!(dev, 0);
        fails(cuDeviceGet(&mut dev, 1), CUresult::CUDA_ERROR_INVALID_DEVICE);
        let mut name = [0 as c_char; 64];
        ok(cuDeviceGetName(name.as_mut_ptr(), 64, 0));
        assert!(CStr::from_ptr(name.as_ptr()).to_str().unwrap().contains("softgpu"));
        let mut short = [1 as c_char; 4];
        ok(cuDeviceGetName(short.as_mut_ptr(), 4, 0));
        assert_eq!(short[3], 0, "truncated and NUL-terminated");
        let mut total = 0usize;
        ok(cuDeviceTotalMem_v2(&mut total, 0));
        let spec = &kiln_softgpu::device::device().unwrap().spec;
        assert_eq!(total as u64, spec.memory_bytes);

        let attr = |a: u32| {
            let mut v = -1;
            ok(cuDeviceGetAttribute(&mut v, a, 0));
            v
        };
        assert_eq!(
            (attr(75), attr(76)),
            (spec.compute_capability.0 as i32, spec.compute_capability.1 as i32)
        );
        assert_eq!(attr(115), 1, "MEMORY_POOLS_SUPPORTED");
        assert_eq!(attr(8), 48 * 1024, "MAX_SHARED_MEMORY_PER_BLOCK");
        assert_eq!(attr(97), spec.shared_per_block_optin as i32);
        assert_eq!(attr(81), spec.shared_per_multiprocessor as i32);
        assert_eq!(attr(16), spec.multiprocessors as i32);
        assert_eq!(attr(10), 32);
        assert_eq!(attr(1), 1024);
        assert_eq!([attr(2), attr(3), attr(4)], [1024, 1024, 64]);
        assert_eq!([attr(5), attr(6), attr(7)], [i32::MAX, 65535, 65535]);
        assert_eq!(attr(12), 65536);
        assert!(attr(13) > 0, "CLOCK_RATE");
        let mut v = 0;
        let msg = fails(cuDeviceGetAttribute(&mut v, 9999, 0), CUresult::CUDA_ERROR_INVALID_VALUE);
        assert!(msg.contains("9999"), "{msg}");
        fails(cuDeviceGetAttribute(std::ptr::null_mut(), 75, 0), CUresult::CUDA_ERROR_INVALID_VALUE);
        fails(cuDeviceGetAttribute(&mut v, 75, 3), CUresult::CUDA_ERROR_INVALID_DEVICE);
    }
}

#[test]
fn contexts_are_per_thread() {
    init();
    unsafe {
        let mut ctx = std::ptr::null_mut();
        ok(cuCtxGetCurrent(&mut ctx));
        assert!(!ctx.is_null());
        let mut dev = -1;
        ok(cuCtxGetDevice(&mut dev));
        assert_eq!(dev, 0);
        ok(cuCtxSynchronize());
        let (mut free, mut total) = (0, 0);
        ok(cuMemGetInfo_v2(&mut free, &mut total));
        assert!(free <= total && total > 0);
        std::thread::spawn(|| {
            let mut ctx = std::ptr::dangling_mut::<c_void>();
            ok(cuCtxGetCurrent(&mut ctx));
            assert!(ctx.is_null(), "a new thread has no current context");
            let mut p = 0;
            fails(cuMemAlloc_v2(&mut p, 16), CUresult::CUDA_ERROR_INVALID_CONTEXT);
            fails(cuCtxSetCurrent(0x1234 as *mut c_void), CUresult::CUDA_ERROR_INVALID_CONTEXT);
        })
        .join()
        .unwrap();
    }
}

#[test]
fn error_names_and_strings() {
    unsafe {
        for code in
            [0, 1, 2, 3, 200, 201, 218, 400, 500, 600, 700, 702, 710, 715, 716, 719, 801, 900, 901, 907, 999]
        {
            let (mut name, mut text) = (std::ptr::null(), std::ptr::null());
            ok(cuGetErrorName(CUresult(code), &mut name));
            ok(cuGetErrorString(CUresult(code), &mut text));
            let name = CStr::from_ptr(name).to_str().unwrap();
            assert!(name.starts_with("CUDA_"), "{name}");
            assert!(!CStr::from_ptr(text).to_bytes().is_empty());
        }
        assert_eq!(error_name(CUresult::CUDA_ERROR_ILLEGAL_ADDRESS), "CUDA_ERROR_ILLEGAL_ADDRESS");
        let mut p = std::ptr::dangling::<c_char>();
        fails(cuGetErrorName(CUresult(12345), &mut p), CUresult::CUDA_ERROR_INVALID_VALUE);
        assert!(p.is_null());
    }
}

#[test]
fn alloc_copy_set_round_trips() {
    init();
    let mut rng = StdRng::seed_from_u64(7);
    unsafe {
        for len in [1usize, 3, 255, 256, 257, 4096, 100_003] {
            let data = random_bytes(&mut rng, len);
            let a = alloc(len);
            assert_eq!(a % 256, 0);
            htod(a, &data);
            assert_eq!(dtoh(a, len), data);
            // Device-to-device, synchronous and on a stream.
            let b = alloc(len);
            ok(cuMemcpyDtoD_v2(b, a, len));
            assert_eq!(dtoh(b, len), data);
            let mut s = std::ptr::null_mut();
            ok(cuStreamCreate(&mut s, 1));
            let c = alloc(len);
            ok(cuMemcpyDtoDAsync_v2(c, b, len, s));
            let mut back = vec![0u8; len];
            ok(cuMemcpyDtoHAsync_v2(back.as_mut_ptr() as *mut c_void, c, len, s));
            assert_eq!(back, data, "async copies are complete on return");
            // Part of a buffer, at an offset.
            if len > 10 {
                let part = random_bytes(&mut rng, len / 2);
                ok(cuMemcpyHtoDAsync_v2(c + 5, part.as_ptr() as *const c_void, part.len(), s));
                let mut want = data.clone();
                want[5..5 + part.len()].copy_from_slice(&part);
                assert_eq!(dtoh(c, len), want);
            }
            // Sets.
            let v: u8 = rng.random();
            ok(cuMemsetD8Async(b, v, len, s));
            assert_eq!(dtoh(b, len), vec![v; len]);
            ok(cuMemsetD8_v2(b, v ^ 0x5a, len / 2));
            let got = dtoh(b, len);
            assert!(got[..len / 2].iter().all(|&x| x == v ^ 0x5a) && got[len / 2..].iter().all(|&x| x == v));
            if len >= 8 {
                let w: u32 = rng.random();
                ok(cuMemsetD32Async(a, w, len / 4, s));
                ok(cuMemsetD32_v2(b, !w, len / 4));
                assert_eq!(words(&dtoh(a, len / 4 * 4)), vec![w; len / 4]);
                assert_eq!(words(&dtoh(b, len / 4 * 4)), vec![!w; len / 4]);
                fails(cuMemsetD32Async(a + 2, w, 1, s), CUresult::CUDA_ERROR_INVALID_VALUE);
            }
            ok(cuStreamSynchronize(s));
            ok(cuStreamQuery(s));
            ok(cuStreamDestroy_v2(s));
            fails(cuStreamDestroy_v2(s), CUresult::CUDA_ERROR_INVALID_HANDLE);
            for p in [a, b, c] {
                ok(cuMemFree_v2(p));
            }
        }
    }
}

#[test]
fn async_allocation_and_bad_ranges() {
    init();
    unsafe {
        let mut s = std::ptr::null_mut();
        ok(cuStreamCreate(&mut s, 0));
        let mut p = 0;
        ok(cuMemAllocAsync(&mut p, 64, s));
        let mut empty = 0;
        ok(cuMemAllocAsync(&mut empty, 0, s));
        assert!(empty != 0 && empty != p, "an empty allocation is a fresh pointer");
        ok(cuMemFreeAsync(empty, s));
        fails(cuMemAlloc_v2(&mut empty, 0), CUresult::CUDA_ERROR_INVALID_VALUE);
        fails(cuMemAlloc_v2(std::ptr::null_mut(), 16), CUresult::CUDA_ERROR_INVALID_VALUE);

        let data = [1u8; 65];
        let msg =
            fails(cuMemcpyHtoD_v2(p, data.as_ptr() as *const c_void, 65), CUresult::CUDA_ERROR_INVALID_VALUE);
        assert!(msg.contains(&format!("{p:#x}")) && msg.contains("runs past the end of allocation"), "{msg}");
        // Below the first global address: tests on other threads allocate beside `p`, so an
        // address past it may be theirs.
        let stray = kiln_softgpu::memory::GLOBAL_BASE - 4096;
        let msg = fails(
            cuMemcpyHtoD_v2(stray, data.as_ptr() as *const c_void, 1),
            CUresult::CUDA_ERROR_INVALID_VALUE,
        );
        assert!(msg.contains("not inside any live allocation"), "{msg}");
        fails(cuMemcpyHtoD_v2(p, std::ptr::null(), 4), CUresult::CUDA_ERROR_INVALID_VALUE);
        fails(cuMemsetD8_v2(p + 60, 0, 5), CUresult::CUDA_ERROR_INVALID_VALUE);
        ok(cuMemcpyHtoD_v2(p, std::ptr::null(), 0));
        ok(cuMemFreeAsync(p, s));
        let msg =
            fails(cuMemcpyDtoH_v2(data.as_ptr() as *mut c_void, p, 4), CUresult::CUDA_ERROR_INVALID_VALUE);
        assert!(msg.contains("use after free"), "{msg}");
        fails(cuMemFree_v2(p), CUresult::CUDA_ERROR_INVALID_VALUE);
        fails(cuMemFree_v2(0x1234), CUresult::CUDA_ERROR_INVALID_VALUE);
        fails(cuMemAllocAsync(&mut p, 8, 0x999 as *mut c_void), CUresult::CUDA_ERROR_INVALID_HANDLE);
        ok(cuStreamDestroy_v2(s));
        let mut buf = [0 as c_char; 256];
        let n = kiln_softgpu_last_error(buf.as_mut_ptr(), buf.len());
        assert!(n > 0 && CStr::from_ptr(buf.as_ptr()).to_bytes().len() == n.min(255));
    }
}

/// A host-side reference for a 2D copy.
#[allow(clippy::too_many_arguments)]
fn copy_2d_ref(
    src: &[u8],
    sx: usize,
    sy: usize,
    sp: usize,
    dst: &mut [u8],
    dx: usize,
    dy: usize,
    dp: usize,
    w: usize,
    h: usize,
) {
    for r in 0..h {
        let s = sx + (sy + r) * sp;
        let d = dx + (dy + r) * dp;
        dst[d..d + w].copy_from_slice(&src[s..s + w]);
    }
}

#[test]
fn pitched_2d_copies() {
    init();
    let mut rng = StdRng::seed_from_u64(11);
    let (w, h) = (37usize, 9usize);
    let (sp, dp) = (64usize, 48usize);
    unsafe {
        let host_src = random_bytes(&mut rng, sp * (h + 2));
        let dev_a = alloc(dp * (h + 3));
        let init_a = random_bytes(&mut rng, dp * (h + 3));
        htod(dev_a, &init_a);

        // Host to device, with offsets at both ends.
        let mut c = CUDA_MEMCPY2D::zeroed();
        c.srcMemoryType = 1;
        c.srcHost = host_src.as_ptr() as *const c_void;
        c.srcXInBytes = 3;
        c.srcY = 1;
        c.srcPitch = sp;
        c.dstMemoryType = 2;
        c.dstDevice = dev_a;
        c.dstXInBytes = 5;
        c.dstY = 2;
        c.dstPitch = dp;
        c.WidthInBytes = w;
        c.Height = h;
        ok(cuMemcpy2DAsync_v2(&c, std::ptr::null_mut()));
        let mut want = init_a.clone();
        copy_2d_ref(&host_src, 3, 1, sp, &mut want, 5, 2, dp, w, h);
        assert_eq!(dtoh(dev_a, want.len()), want);

        // Device to device (unified addressing on the source), then device to host.
        let dev_b = alloc(80 * h);
        htod(dev_b, &vec![0xee; 80 * h]);
        let mut d = CUDA_MEMCPY2D::zeroed();
        d.srcMemoryType = 4;
        d.srcDevice = dev_a;
        d.srcPitch = dp;
        d.dstMemoryType = 2;
        d.dstDevice = dev_b;
        d.dstPitch = 80;
        d.WidthInBytes = dp;
        d.Height = h;
        ok(cuMemcpy2D_v2(&d));
        let mut want_b = vec![0xee; 80 * h];
        copy_2d_ref(&want, 0, 0, dp, &mut want_b, 0, 0, 80, dp, h);
        assert_eq!(dtoh(dev_b, want_b.len()), want_b);

        let mut out = vec![0u8; 50 * h];
        let mut e = CUDA_MEMCPY2D::zeroed();
        e.srcMemoryType = 2;
        e.srcDevice = dev_b;
        e.srcXInBytes = 7;
        e.srcPitch = 80;
        e.dstMemoryType = 1;
        e.dstHost = out.as_mut_ptr() as *mut c_void;
        e.dstPitch = 50;
        e.WidthInBytes = 41;
        e.Height = h;
        ok(cuMemcpy2D_v2(&e));
        let mut want_out = vec![0u8; 50 * h];
        copy_2d_ref(&want_b, 7, 0, 80, &mut want_out, 0, 0, 50, 41, h);
        assert_eq!(out, want_out);

        // Errors: a pitch below the width, a last row past the end, arrays, null.
        let mut bad = e;
        bad.dstPitch = 40;
        fails(cuMemcpy2D_v2(&bad), CUresult::CUDA_ERROR_INVALID_VALUE);
        let mut bad = d;
        bad.Height = h + 1;
        let msg = fails(cuMemcpy2D_v2(&bad), CUresult::CUDA_ERROR_INVALID_VALUE);
        assert!(msg.contains("2D copy"), "{msg}");
        let mut bad = d;
        bad.srcMemoryType = 3;
        fails(cuMemcpy2D_v2(&bad), CUresult::CUDA_ERROR_NOT_SUPPORTED);
        fails(cuMemcpy2D_v2(std::ptr::null()), CUresult::CUDA_ERROR_INVALID_VALUE);
    }
}

#[test]
fn events_time_host_intervals() {
    init();
    unsafe {
        let mut s = std::ptr::null_mut();
        ok(cuStreamCreate(&mut s, 1));
        let (mut e0, mut e1, mut nt) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
        ok(cuEventCreate(&mut e0, 0));
        ok(cuEventCreate(&mut e1, 0));
        ok(cuEventCreate(&mut nt, 2));
        let mut ms = -1.0f32;
        fails(cuEventElapsedTime(&mut ms, e0, e1), CUresult::CUDA_ERROR_INVALID_HANDLE);
        ok(cuEventQuery(e0));
        ok(cuEventRecord(e0, s));
        std::thread::sleep(std::time::Duration::from_millis(20));
        ok(cuEventRecord(e1, std::ptr::null_mut()));
        ok(cuEventRecord(nt, s));
        ok(cuEventSynchronize(e1));
        ok(cuEventQuery(e1));
        ok(cuStreamWaitEvent(s, e1, 0));
        ok(cuEventElapsedTime(&mut ms, e0, e1));
        assert!((15.0..5000.0).contains(&ms), "{ms}");
        ok(cuEventElapsedTime(&mut ms, e1, e0));
        assert!(ms < 0.0);
        fails(cuEventElapsedTime(&mut ms, e0, nt), CUresult::CUDA_ERROR_INVALID_HANDLE);
        for e in [e0, e1, nt] {
            ok(cuEventDestroy_v2(e));
        }
        fails(cuEventQuery(e0), CUresult::CUDA_ERROR_INVALID_HANDLE);
        fails(cuEventRecord(e0, s), CUresult::CUDA_ERROR_INVALID_HANDLE);
        fails(cuStreamWaitEvent(s, e0, 0), CUresult::CUDA_ERROR_INVALID_HANDLE);
        ok(cuStreamDestroy_v2(s));
    }
}
