//! The flash-attention kernels on the GPU at SDXL shapes (and SD 1.5's head dims, and causal
//! self-attention of CLIP's 77 tokens and of 4096), printing achieved TFLOP/s with FLOPs =
//! 4·B·H·Lq·Lk·D, halved when causal (the two matrix products; the count
//! FlashAttention papers use).
//!
//! Run: `cargo bench -p kiln-benches --features cuda --bench cuda_attention`. Without a CUDA
//! driver, a GPU or NVRTC it prints why and exits. The module is compiled with kiln-kernels'
//! `Compiler` for the device's architecture.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use cudarc::driver::{CudaContext, CudaModule, CudaSlice, CudaStream};
use cudarc::nvrtc::Ptx;
use kiln_kernels::attention::{AttentionDims, AttentionKernel, KernelElem, launch_flash_attention};
use kiln_kernels::{Arch, Compiler, Family};

/// (label, batch, heads, len_q, len_k, head_dim, causal).
const CASES: [(&str, usize, usize, usize, usize, usize, bool); 8] = [
    ("sdxl self 4096", 2, 10, 4096, 4096, 64, false),
    ("sdxl self 1024", 2, 20, 1024, 1024, 64, false),
    ("sdxl cross 4096x77", 2, 10, 4096, 77, 64, false),
    ("sd15 self 4096 d40", 2, 8, 4096, 4096, 40, false),
    ("sd15 self 1024 d80", 2, 8, 1024, 1024, 80, false),
    ("self 4096 d128", 2, 16, 4096, 4096, 128, false),
    ("openclip-g causal 77", 2, 20, 77, 77, 64, true),
    ("causal 4096", 2, 10, 4096, 4096, 64, true),
];

/// The attention module compiled for device 0, or why not.
fn setup() -> Result<(Arc<CudaContext>, Arc<CudaModule>), String> {
    // SAFETY: only probes whether the driver library can be loaded.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver library (libcuda) on this machine".into());
    }
    let compiler = Compiler::new().map_err(|e| e.to_string())?;
    let ctx = CudaContext::new(0).map_err(|e| format!("no CUDA device: {e}"))?;
    let (major, minor) = ctx.compute_capability().map_err(|e| e.to_string())?;
    if major < 8 {
        return Err(format!("device is sm_{major}{minor}; the attention kernels need sm_80 or newer"));
    }
    let arch = compiler.target_for(Arch { major: major as u32, minor: minor as u32 });
    let compiled = compiler.compile(Family::Attention, arch).map_err(|e| format!("attention.cu: {e}"))?;
    let module = ctx
        .load_module(Ptx::from_src(compiled.ptx))
        .map_err(|e| format!("loading the attention PTX: {e}"))?;
    Ok((ctx, module))
}

/// Device buffers of uniform values in [-1, 1) (a fixed LCG: the values do not matter here).
fn random<T: KernelElem>(stream: &Arc<CudaStream>, n: usize, seed: u64, f: fn(f32) -> T) -> CudaSlice<T> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let host: Vec<T> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            f(((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
        })
        .collect();
    stream.clone_htod(&host).expect("upload")
}

fn bench_case<T: KernelElem>(
    c: &mut Criterion,
    ctx: &Arc<CudaContext>,
    module: &Arc<CudaModule>,
    label: &str,
    dims: AttentionDims,
    f: fn(f32) -> T,
) {
    let kernel = AttentionKernel::for_head_dim(T::DTYPE, dims.head_dim).expect("instantiated head dim");
    let func = module.load_function(&kernel.entry()).expect("entry in module");
    let stream = ctx.default_stream();
    let q = random(&stream, dims.q_len().unwrap(), 1, f);
    let k = random(&stream, dims.kv_len().unwrap(), 2, f);
    let v = random(&stream, dims.kv_len().unwrap(), 3, f);
    let mut o = random(&stream, dims.q_len().unwrap(), 4, f);
    let mut run = || launch_flash_attention(&stream, &func, &q, &k, &v, &mut o, dims).expect("launch");
    run();
    stream.synchronize().expect("first run");

    let flops = dims.flops();
    let per_iter = Mutex::new(Vec::<f64>::new());
    let mut g = c.benchmark_group("cuda attention");
    g.sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(flops as u64));
    let id = format!("{label} {} {:?}", kernel.entry(), (dims.batch, dims.heads, dims.len_q, dims.len_k));
    g.bench_function(&id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                run();
            }
            stream.synchronize().expect("sync");
            let t = start.elapsed();
            if iters > 0 {
                per_iter.lock().unwrap().push(t.as_secs_f64() / iters as f64);
            }
            t
        })
    });
    g.finish();
    let mut v = per_iter.into_inner().unwrap();
    v.sort_by(f64::total_cmp);
    if let (Some(&best), Some(&median)) = (v.first(), v.get(v.len() / 2)) {
        println!(
            "cuda attention/{id}: {:.1} TFLOP/s (best {:.1}, {:.3} ms/iter)",
            flops / median / 1e12,
            flops / best / 1e12,
            median * 1e3
        );
    }
}

fn attention(c: &mut Criterion) {
    let (ctx, module) = match setup() {
        Ok(x) => x,
        Err(why) => {
            println!("skipping the CUDA attention benches: {why}");
            return;
        }
    };
    for (i, (label, batch, heads, len_q, len_k, head_dim, causal)) in CASES.into_iter().enumerate() {
        let scale = 1.0 / (head_dim as f32).sqrt();
        let dims = AttentionDims { batch, heads, len_q, len_k, head_dim, scale, causal };
        bench_case(c, &ctx, &module, label, dims, half::bf16::from_f32);
        if i == 0 {
            bench_case(c, &ctx, &module, label, dims, half::f16::from_f32);
        }
    }
}

criterion_group!(benches, attention);
criterion_main!(benches);
