//! What the CUDA kernel benches share: opening the GPU (or saying why not), random device
//! buffers, and a criterion case that times launches with a stream synchronisation at the end
//! of each batch and prints GB/s from the same timings.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use kiln_benches::{Samples, Work, random_f32, report};
use kiln_kernels::{Compiler, KernelModules};

/// A GPU with every kernel family loaded.
pub struct Gpu {
    /// The stream every launch goes to.
    pub stream: Arc<CudaStream>,
    /// The loaded kernels.
    pub modules: KernelModules,
}

/// Device 0 with the kernels loaded, or why the GPU benches cannot run here.
pub fn open_gpu() -> Result<Gpu, String> {
    // SAFETY: only tries to open libcuda by its usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda) on this machine".into());
    }
    let ctx = CudaContext::new(0).map_err(|e| format!("no CUDA device: {e}"))?;
    let compiler = Compiler::new().map_err(|e| e.to_string())?;
    let modules = KernelModules::load(&ctx, &compiler).map_err(|e| e.to_string())?;
    println!("GPU: {} ({}), kernels for {}", ctx.name().unwrap_or_default(), ctx.ordinal(), modules.arch());
    Ok(Gpu { stream: ctx.default_stream(), modules })
}

/// `n` seeded uniform values in `[-1, 1)` as bf16 on the device.
pub fn random_bf16(stream: &Arc<CudaStream>, n: usize, seed: u64) -> CudaSlice<half::bf16> {
    let host: Vec<half::bf16> = random_f32(n, seed).into_iter().map(half::bf16::from_f32).collect();
    stream.clone_htod(&host).expect("device allocation")
}

/// A zeroed device buffer of `n` values.
pub fn zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    n: usize,
) -> CudaSlice<T> {
    stream.alloc_zeros::<T>(n).expect("device allocation")
}

/// Times `launch` as `group/id` (each criterion batch ends with a stream synchronisation,
/// inside the timed region) and prints its rate.
pub fn case(
    c: &mut Criterion,
    stream: &CudaStream,
    group: &str,
    id: &str,
    work: Work,
    mut launch: impl FnMut(),
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1000))
        .throughput(match work {
            Work::Flops(n) => Throughput::Elements(n),
            Work::Bytes(n) => Throughput::Bytes(n),
        });
    let samples = Samples::default();
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut done = 0;
            samples.time(iters, || {
                launch();
                done += 1;
                if done == iters {
                    stream.synchronize().expect("stream synchronisation");
                }
            })
        })
    });
    g.finish();
    report(&format!("{group}/{id}"), work, &samples);
}
