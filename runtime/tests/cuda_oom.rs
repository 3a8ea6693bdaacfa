//! Running out of device memory: the caching allocator frees its cache and retries once, and a
//! request that still does not fit is a typed [`Error::OutOfMemory`], not a panic.
//!
//! Needs a device whose memory the test can bound: the software GPU (softgpu/), whose size is
//! `KILN_SOFTGPU_MEMORY`. The test re-runs itself in a child process with 160 MiB (the device
//! is made once per process). On a real GPU it says so and passes; without a GPU it skips
//! (a failure under `KILN_REQUIRE_GPU=1`).
#![cfg(feature = "cuda")]

use std::process::Command;

use kiln_runtime::cuda;
use kiln_runtime::{DType, Error};

const CHILD: &str = "KILN_OOM_TEST_CHILD";
const TEST: &str = "out_of_memory_frees_the_cache_retries_then_is_a_typed_error";

#[test]
fn out_of_memory_frees_the_cache_retries_then_is_a_typed_error() {
    if std::env::var_os(CHILD).is_none() {
        match cuda::device(0) {
            Err(e) => return cuda::skip_gpu_test(TEST, &format!("no usable CUDA device: {e}")),
            Ok(dev) if !dev.name().contains("softgpu") => {
                return eprintln!(
                    "{TEST}: needs the software GPU to bound device memory; {} is real",
                    dev.name()
                );
            }
            Ok(_) => {}
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("KILN_SOFTGPU_MEMORY", "160M")
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "the 160 MiB child failed:\n{text}");
        return;
    }
    // The child: a 160 MiB device, of which cuBLASLt's workspace takes 32 MiB.
    let dev = cuda::device(0).unwrap();
    let mib = |n: usize| [n << 19]; // n MiB of bf16 elements
    drop(dev.alloc_tensor(&mib(96), DType::BF16).unwrap());
    assert!(dev.memory_stats().cached >= 96 << 20, "{:?}", dev.memory_stats());
    // 64 MiB is another bucket and does not fit beside the cached 96: the allocator must free
    // its cache and retry.
    let b =
        dev.alloc_tensor(&mib(64), DType::BF16).unwrap_or_else(|e| panic!("after freeing the cache: {e}"));
    let stats = dev.memory_stats();
    assert_eq!(stats.cached, 0, "the cache was freed: {stats:?}");
    assert!(stats.in_use >= 64 << 20, "{stats:?}");
    // More than the device holds: a typed error naming the size.
    match dev.alloc_tensor(&mib(200), DType::BF16) {
        Err(Error::OutOfMemory { bytes, .. }) => assert_eq!(bytes, 200 << 20),
        Err(e) => panic!("expected OutOfMemory, got {e}"),
        Ok(_) => panic!("200 MiB fit on a 160 MiB device"),
    }
    drop(b);
}
