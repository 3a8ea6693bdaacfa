//! End to end: cudarc (as kiln uses it) dlopens `libkiln_softgpu.so` through a folder of
//! `libcuda.so` links, and runs a context, allocations, copies, a PTX launch, a second
//! stream with events, and a captured graph.
//!
//! dlopen's search path is fixed when the process starts, so the parent test makes the link
//! folder and re-runs this test binary as a child with `LD_LIBRARY_PATH` pointing at it; the
//! child does the cudarc part.

use std::path::{Path, PathBuf};
use std::process::Command;

const CHILD: &str = "KILN_SOFTGPU_CUDARC_CHILD";
const LIB: &str = "libkiln_softgpu.so";

/// The cdylib `cargo test` built for this test (in `deps/`, next to the test executable), or
/// the one in the profile folder; built with `cargo build -p kiln-softgpu` if neither exists.
fn find_cdylib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let candidates = [deps.join(LIB), deps.parent().unwrap().join(LIB)];
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return found.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "-p", "kiln-softgpu"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p kiln-softgpu failed");
    candidates.into_iter().find(|p| p.exists()).expect("the cdylib after cargo build")
}

fn link_folder(lib: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-softgpu-cudarc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["libcuda.so", "libcuda.so.1", "libcublasLt.so", "libcublasLt.so.12"] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib, &link).unwrap();
    }
    dir
}

#[test]
fn cudarc_runs_on_the_software_gpu() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let lib = find_cdylib();
    let dir = link_folder(&lib);
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cudarc_runs_on_the_software_gpu", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("LD_LIBRARY_PATH", &dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("cudarc child ok"), "child failed:\n{text}");
}

/// `k(src, dst, value)`: dst[0..4] = src[0..4]; dst[4] = value.
const PTX: &str = "
.version 8.8
.target sm_90
.address_size 64
.visible .entry k(.param .u64 src, .param .u64 dst, .param .u32 value)
{
  .reg .b32 %r<6>;
  .reg .b64 %rd<3>;
  ld.param.u64 %rd1, [src];
  ld.param.u64 %rd2, [dst];
  ld.param.u32 %r5, [value];
  ld.global.v4.u32 {%r1, %r2, %r3, %r4}, [%rd1];
  st.global.v4.u32 [%rd2], {%r1, %r2, %r3, %r4};
  st.global.u32 [%rd2+16], %r5;
  ret;
}
";

fn child() {
    use cudarc::driver::sys::{CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
    use cudarc::driver::{CudaContext, LaunchConfig, PushKernelArg};
    use cudarc::nvrtc::Ptx;

    assert!(
        unsafe { cudarc::driver::sys::is_culib_present() },
        "libcuda.so not found through LD_LIBRARY_PATH"
    );
    let ctx = CudaContext::new(0).unwrap();
    assert!(ctx.name().unwrap().contains("softgpu"));
    let cc = ctx.compute_capability().unwrap();
    assert!(cc == (9, 0) || cc == (8, 0), "{cc:?}");
    let stream = ctx.default_stream();

    let src = stream.clone_htod(&[11u32, 22, 33, 44]).unwrap();
    let mut dst = stream.alloc_zeros::<u32>(5).unwrap();
    assert_eq!(stream.clone_dtoh(&dst).unwrap(), vec![0; 5]);
    let module = ctx.load_module(Ptx::from_src(PTX)).unwrap();
    let f = module.load_function("k").unwrap();
    let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
    let value = 99u32;
    let mut b = stream.launch_builder(&f);
    b.arg(&src).arg(&mut dst).arg(&value);
    unsafe { b.launch(cfg) }.unwrap();
    assert_eq!(stream.clone_dtoh(&dst).unwrap(), vec![11, 22, 33, 44, 99]);
    assert!(module.load_function("missing").is_err());

    // A second stream (cudarc then tracks every buffer with events), memset and htod.
    let s2 = ctx.new_stream().unwrap();
    let start = s2.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
    s2.memcpy_htod(&[5u32, 6, 7, 8, 9], &mut dst).unwrap();
    let mut src2 = s2.alloc_zeros::<u32>(4).unwrap();
    s2.memcpy_htod(&[1u32, 2, 3, 4], &mut src2).unwrap();
    let end = s2.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
    assert!(start.elapsed_ms(&end).unwrap() >= 0.0);
    s2.synchronize().unwrap();
    assert_eq!(s2.clone_dtoh(&dst).unwrap(), vec![5, 6, 7, 8, 9]);

    // Capture a memset and a launch, replay them.
    unsafe { ctx.disable_event_tracking() };
    let s3 = ctx.new_stream().unwrap();
    let mut out = s3.alloc_zeros::<u32>(5).unwrap();
    s3.memcpy_htod(&[1u32; 5], &mut out).unwrap();
    s3.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).unwrap();
    s3.memset_zeros(&mut out).unwrap();
    let mut b = s3.launch_builder(&f);
    let seven = 7u32;
    b.arg(&src2).arg(&mut out).arg(&seven);
    unsafe { b.launch(cfg) }.unwrap();
    let graph = s3.end_capture(CUgraphInstantiate_flags(0)).unwrap().expect("a graph");
    assert_eq!(s3.clone_dtoh(&out).unwrap(), vec![1; 5], "capture does not run");
    graph.launch().unwrap();
    assert_eq!(s3.clone_dtoh(&out).unwrap(), vec![1, 2, 3, 4, 7]);

    // Errors come back as cudarc errors with CUDA's names.
    let e = ctx
        .load_module(Ptx::from_src(
            ".version 8.8\n.target sm_90\n.address_size 64\n.visible .entry z() { bogus.op; }",
        ))
        .unwrap_err();
    assert_eq!(e.0, cudarc::driver::sys::CUresult::CUDA_ERROR_INVALID_PTX);
    assert!(format!("{e:?}").contains("CUDA_ERROR_INVALID_PTX"), "{e:?}");
    let (free, total) = cudarc::driver::result::mem_get_info().unwrap();
    assert!(free <= total && total > 0);
    println!("cudarc child ok");
}
