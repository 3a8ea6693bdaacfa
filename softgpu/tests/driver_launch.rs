//! Driver API: modules, functions and their attributes, launches (struct parameters,
//! configuration checks, shared memory opt-in), and stream capture with graph replay.

mod driver_common;

use std::ffi::{CString, c_void};

use driver_common::*;
use kiln_softgpu::driver::CUresult;
use kiln_softgpu::driver::graph::*;
use kiln_softgpu::driver::memory::*;
use kiln_softgpu::driver::module::*;
use kiln_softgpu::driver::stream::*;
use kiln_softgpu::testing::kernel_ptx;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A struct passed by value: 24 bytes, 8-aligned, with padding after `d`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Params {
    a: u32,
    b: f32,
    c: u64,
    d: u16,
}

/// `k(out, s, tail)`: writes s.a, s.b, s.c, s.d and tail to `out` (one thread).
fn struct_kernel() -> String {
    kernel_ptx(
        ".param .u64 out, .param .align 8 .b8 s[24], .param .u32 tail",
        "  .reg .b16 %h<2>;\n  .reg .b32 %r<4>;\n  .reg .b64 %rd<3>;\n\
         ld.param.u64 %rd1, [out];\n  ld.param.u32 %r1, [s];\n  ld.param.u32 %r2, [s+4];\n\
         ld.param.u64 %rd2, [s+8];\n  ld.param.u16 %h1, [s+16];\n  ld.param.u32 %r3, [tail];\n\
         st.global.u32 [%rd1], %r1;\n  st.global.u32 [%rd1+4], %r2;\n  st.global.u64 [%rd1+8], %rd2;\n\
         st.global.u16 [%rd1+16], %h1;\n  st.global.u32 [%rd1+20], %r3;\n  ret;",
    )
}

#[test]
fn struct_parameters_by_value() {
    init();
    let mut rng = StdRng::seed_from_u64(3);
    let (r, m) = load(&struct_kernel());
    ok(r);
    let f = function(m, "k");
    assert_eq!(f, function(m, "k"), "one handle per name");
    let out = alloc(24);
    for _ in 0..5 {
        let p = Params { a: rng.random(), b: rng.random(), c: rng.random(), d: rng.random() };
        let tail: u32 = rng.random();
        ok(launch(f, [1, 1, 1], [1, 1, 1], 0, std::ptr::null_mut(), &mut [arg(&out), arg(&p), arg(&tail)]));
        let got = dtoh(out, 24);
        assert_eq!(u32::from_le_bytes(got[0..4].try_into().unwrap()), p.a);
        assert_eq!(f32::from_le_bytes(got[4..8].try_into().unwrap()).to_bits(), p.b.to_bits());
        assert_eq!(u64::from_le_bytes(got[8..16].try_into().unwrap()), p.c);
        assert_eq!(u16::from_le_bytes(got[16..18].try_into().unwrap()), p.d);
        assert_eq!(u32::from_le_bytes(got[20..24].try_into().unwrap()), tail);
    }
    // A null parameter pointer, `extra`, a null array.
    let msg = fails(
        launch(
            f,
            [1, 1, 1],
            [1, 1, 1],
            0,
            std::ptr::null_mut(),
            &mut [arg(&out), std::ptr::null_mut(), arg(&0u32)],
        ),
        CUresult::CUDA_ERROR_INVALID_VALUE,
    );
    assert!(msg.contains("kernelParams[1]"), "{msg}");
    unsafe {
        let mut extra = [std::ptr::null_mut::<c_void>()];
        let r = kiln_softgpu::driver::launch::cuLaunchKernel(
            f,
            1,
            1,
            1,
            1,
            1,
            1,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            extra.as_mut_ptr(),
        );
        fails(r, CUresult::CUDA_ERROR_NOT_SUPPORTED);
        let r = kiln_softgpu::driver::launch::cuLaunchKernel(
            f,
            1,
            1,
            1,
            1,
            1,
            1,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        fails(r, CUresult::CUDA_ERROR_INVALID_VALUE);
        ok(cuModuleUnload(m));
        fails(cuModuleUnload(m), CUresult::CUDA_ERROR_INVALID_HANDLE);
        let r = launch(
            f,
            [1, 1, 1],
            [1, 1, 1],
            0,
            std::ptr::null_mut(),
            &mut [arg(&out), arg(&Params { a: 0, b: 0.0, c: 0, d: 0 }), arg(&0u32)],
        );
        fails(r, CUresult::CUDA_ERROR_INVALID_HANDLE);
    }
}

#[test]
fn module_load_errors() {
    init();
    let (r, _) = load("this is not PTX");
    let msg = fails(r, CUresult::CUDA_ERROR_INVALID_PTX);
    assert!(msg.contains("does not parse"), "{msg}");
    let (r, _) = load(&kernel_ptx("", "  frobnicate.b32 %r1, %r2;\n  ret;"));
    let msg = fails(r, CUresult::CUDA_ERROR_INVALID_PTX);
    assert!(msg.contains("frobnicate"), "the message names the opcode: {msg}");
    let (r, _) = load("\x7fELF\x02\x01");
    fails(r, CUresult::CUDA_ERROR_INVALID_IMAGE);
    unsafe {
        let mut m = std::ptr::null_mut();
        fails(cuModuleLoadData(&mut m, std::ptr::null()), CUresult::CUDA_ERROR_INVALID_VALUE);
    }
    let (r, m) = load(&struct_kernel());
    ok(r);
    let name = CString::new("missing").unwrap();
    let mut f = std::ptr::null_mut();
    let msg = unsafe { fails(cuModuleGetFunction(&mut f, m, name.as_ptr()), CUresult::CUDA_ERROR_NOT_FOUND) };
    assert!(msg.contains("missing") && msg.contains("it has: k"), "{msg}");
    unsafe { ok(cuModuleUnload(m)) };
}

/// A kernel with 1 KiB of static shared memory that touches it under a barrier.
fn shared_kernel() -> String {
    kernel_ptx(
        ".param .u64 out",
        "  .reg .b32 %r<2>;\n  .reg .b64 %rd<2>;\n  .shared .align 4 .b8 smem[1024];\n\
         ld.param.u64 %rd1, [out];\n  ld.global.u32 %r1, [%rd1];\n  bar.sync 0;\n  ret;",
    )
}

#[test]
fn launch_configuration_checks() {
    init();
    let (r, m) = load(&shared_kernel());
    ok(r);
    let f = function(m, "k");
    let buf = alloc(4);
    htod(buf, &[1, 2, 3, 4]);
    let s = std::ptr::null_mut();
    let run = |grid, block, shared| launch(f, grid, block, shared, s, &mut [arg(&buf)]);
    ok(run([2, 1, 1], [64, 2, 1], 0));
    fails(run([1, 1, 1], [0, 1, 1], 0), CUresult::CUDA_ERROR_INVALID_VALUE);
    fails(run([0, 1, 1], [1, 1, 1], 0), CUresult::CUDA_ERROR_INVALID_VALUE);
    fails(run([1, 1, 1], [1025, 1, 1], 0), CUresult::CUDA_ERROR_INVALID_VALUE);
    fails(run([1, 1, 1], [32, 1, 65], 0), CUresult::CUDA_ERROR_INVALID_VALUE);
    fails(run([1, 65536, 1], [1, 1, 1], 0), CUresult::CUDA_ERROR_INVALID_VALUE);

    let attr = |a: u32| {
        let mut v = -1;
        unsafe { ok(cuFuncGetAttribute(&mut v, a, f)) };
        v
    };
    assert_eq!(attr(0), 1024, "MAX_THREADS_PER_BLOCK");
    assert_eq!(attr(1), 1024, "SHARED_SIZE_BYTES (static)");
    assert_eq!(attr(4), REPORTED_NUM_REGS);
    assert_eq!(attr(3), 0, "LOCAL_SIZE_BYTES");
    assert_eq!(attr(8), 48 * 1024 - 1024, "MAX_DYNAMIC_SHARED_SIZE_BYTES by default");
    unsafe {
        let mut v = 0;
        fails(cuFuncGetAttribute(&mut v, 77, f), CUresult::CUDA_ERROR_INVALID_VALUE);
    }

    // 47 KiB of dynamic shared memory fits the default 48 KiB with 1 KiB static; 48 KiB does not.
    ok(run([1, 1, 1], [32, 1, 1], 47 * 1024));
    let msg = fails(run([1, 1, 1], [32, 1, 1], 48 * 1024), CUresult::CUDA_ERROR_INVALID_VALUE);
    assert!(msg.contains("cuFuncSetAttribute"), "{msg}");
    let optin = kiln_softgpu::device::device().unwrap().spec.shared_per_block_optin as i32;
    unsafe {
        fails(cuFuncSetAttribute(f, 8, optin - 1024 + 1), CUresult::CUDA_ERROR_INVALID_VALUE);
        fails(cuFuncSetAttribute(f, 8, -1), CUresult::CUDA_ERROR_INVALID_VALUE);
        ok(cuFuncSetAttribute(f, 8, optin - 1024));
    }
    assert_eq!(attr(8), optin - 1024);
    ok(run([1, 1, 1], [32, 1, 1], 48 * 1024));
    ok(run([1, 1, 1], [32, 1, 1], (optin - 1024) as u32));
    fails(run([1, 1, 1], [32, 1, 1], (optin - 1024) as u32 + 1), CUresult::CUDA_ERROR_INVALID_VALUE);
    unsafe {
        ok(cuFuncSetAttribute(f, 9, 50));
        fails(cuFuncSetAttribute(f, 0, 5), CUresult::CUDA_ERROR_INVALID_VALUE);
        ok(cuFuncSetCacheConfig(f, 1));
        ok(cuModuleUnload(m));
    }
}

/// `k(src, dst, value)`: dst[0..4] = src[0..4]; dst[4] = value (one thread).
fn copy_kernel() -> String {
    kernel_ptx(
        ".param .u64 src, .param .u64 dst, .param .u32 value",
        "  .reg .b32 %r<6>;\n  .reg .b64 %rd<3>;\n  ld.param.u64 %rd1, [src];\n  ld.param.u64 %rd2, [dst];\n\
         ld.param.u32 %r5, [value];\n  ld.global.v4.u32 {%r1, %r2, %r3, %r4}, [%rd1];\n\
         st.global.v4.u32 [%rd2], {%r1, %r2, %r3, %r4};\n  st.global.u32 [%rd2+16], %r5;\n  ret;",
    )
}

#[test]
fn capture_and_replay() {
    init();
    let mut rng = StdRng::seed_from_u64(5);
    let (r, m) = load(&copy_kernel());
    ok(r);
    let f = function(m, "k");
    let (src, dst, fill) = (alloc(16), alloc(20), alloc(32));
    let before: Vec<u32> = (0..5).map(|_| rng.random()).collect();
    htod(dst, &bytes(&before));
    htod(fill, &[0; 32]);
    unsafe {
        let mut s = std::ptr::null_mut();
        ok(cuStreamCreate(&mut s, 1));
        let mut status = 9;
        ok(cuStreamIsCapturing(s, &mut status));
        assert_eq!(status, 0);
        fails(
            cuStreamBeginCapture_v2(std::ptr::null_mut(), 1),
            CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
        );
        ok(cuStreamBeginCapture_v2(s, 1));
        fails(cuStreamBeginCapture_v2(s, 1), CUresult::CUDA_ERROR_ILLEGAL_STATE);
        ok(cuStreamIsCapturing(s, &mut status));
        assert_eq!(status, 1);

        // Recorded, not run: host data read at replay, kernel parameters copied now.
        let mut host: Vec<u32> = (0..4).map(|_| rng.random()).collect();
        let mut value: u32 = rng.random();
        let captured_value = value;
        ok(cuMemcpyHtoDAsync_v2(src, host.as_ptr() as *const c_void, 16, s));
        ok(cuMemsetD32Async(fill, 0xdead_beef, 8, s));
        ok(launch(f, [1, 1, 1], [1, 1, 1], 0, s, &mut [arg(&src), arg(&dst), arg(&value)]));
        let mut e = std::ptr::null_mut();
        ok(cuEventCreate(&mut e, 0));
        ok(cuEventRecord(e, s));
        fails(cuEventQuery(e), CUresult::CUDA_ERROR_CAPTURED_EVENT);
        value = !value;
        let _ = value;
        assert_eq!(words(&dtoh(dst, 20)), before, "nothing ran during capture");
        assert_eq!(dtoh(fill, 32), vec![0; 32]);

        let mut g = std::ptr::null_mut();
        ok(cuStreamEndCapture(s, &mut g));
        assert_eq!(graph_len(g), Some(3));
        let mut exec = std::ptr::null_mut();
        fails(cuGraphInstantiateWithFlags(&mut exec, g, 1 | 4), CUresult::CUDA_ERROR_INVALID_VALUE);
        ok(cuGraphInstantiateWithFlags(&mut exec, g, 0));
        ok(cuGraphUpload(exec, s));
        for _ in 0..3 {
            host.iter_mut().for_each(|w| *w = rng.random());
            ok(cuGraphLaunch(exec, s));
            let mut want = host.clone();
            want.push(captured_value);
            assert_eq!(words(&dtoh(dst, 20)), want);
            assert_eq!(words(&dtoh(fill, 32)), vec![0xdead_beef; 8]);
            htod(fill, &[0; 32]);
        }
        // A graph replayed on the default stream too.
        ok(cuGraphLaunch(exec, std::ptr::null_mut()));
        assert_eq!(words(&dtoh(fill, 32)), vec![0xdead_beef; 8]);
        ok(cuEventRecord(e, s));
        ok(cuEventQuery(e));
        ok(cuGraphExecDestroy(exec));
        ok(cuGraphDestroy(g));
        fails(cuGraphLaunch(exec, s), CUresult::CUDA_ERROR_INVALID_HANDLE);
        fails(cuGraphDestroy(g), CUresult::CUDA_ERROR_INVALID_HANDLE);

        // Synchronising a capturing stream invalidates the capture.
        ok(cuStreamBeginCapture_v2(s, 2));
        fails(cuStreamSynchronize(s), CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        ok(cuStreamIsCapturing(s, &mut status));
        assert_eq!(status, 2);
        fails(cuMemsetD8Async(fill, 0, 4, s), CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
        fails(cuStreamEndCapture(s, &mut g), CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
        assert!(g.is_null());
        fails(cuStreamEndCapture(s, &mut g), CUresult::CUDA_ERROR_ILLEGAL_STATE);

        // A bad range fails at capture and invalidates it.
        ok(cuStreamBeginCapture_v2(s, 1));
        fails(cuMemsetD8Async(fill + 30, 0, 4, s), CUresult::CUDA_ERROR_INVALID_VALUE);
        fails(cuStreamEndCapture(s, &mut g), CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);

        // Ending a thread-local capture on another thread.
        ok(cuStreamBeginCapture_v2(s, 1));
        let sh = s as usize;
        std::thread::spawn(move || {
            init();
            let mut g = std::ptr::null_mut();
            fails(
                cuStreamEndCapture(sh as *mut c_void, &mut g),
                CUresult::CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD,
            );
        })
        .join()
        .unwrap();
        ok(cuStreamEndCapture(s, &mut g));
        assert_eq!(graph_len(g), Some(0), "an empty capture is an empty graph");
        ok(cuGraphDestroy(g));
        ok(cuEventDestroy_v2(e));
        ok(cuStreamDestroy_v2(s));
        ok(cuModuleUnload(m));
    }
}
