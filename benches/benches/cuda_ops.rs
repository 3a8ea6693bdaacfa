//! kiln-runtime's CUDA ops through the `Tensor` API at SDXL shapes: linear layers (cuBLASLt,
//! f32 compute, bias epilogue) and the unfused attention of head dims without a flash kernel
//! (the VAE's mid-block: one head of 512 at 4096 and 16384 tokens; two cuBLASLt GEMMs and the
//! softmax kernel per chunk of query rows), timed with the op's allocation and dispatch
//! overhead included. Kernel-level benches (attention, conv, norms) are in the kernels' own
//! benches.
//!
//! Run: `cargo bench -p kiln-benches --features cuda --bench cuda_ops`. Each case enqueues a
//! batch of ops and synchronises once at the end (ops never wait for the GPU), and prints
//! `linear/CASE: X TFLOP/s (best Y, T ms/iter)` with FLOPs = 2 M N K. Shapes: SDXL at a 128x128
//! latent with classifier-free guidance (batch 2): 4096 tokens at 640 channels, 1024 tokens
//! at 1280, and the 77-token text context (width 2048). The attention cases print
//! `vae attention/CASE` the same way with FLOPs = 4 B H Lq Lk D. Prints the allocator's
//! counters at the end. Skips, saying why, without a GPU.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use kiln_benches::random_tensor;
use kiln_runtime::cuda::{self, CudaDevice};
use kiln_runtime::{DType, Device, Tensor};

/// (label, M, K, N): activations `[M, K]` times weights `[N, K]^T`.
const LINEARS: [(&str, usize, usize, usize); 8] = [
    ("attn proj 640", 2 * 4096, 640, 640),
    ("ff geglu in 640", 2 * 4096, 640, 5120),
    ("ff out 640", 2 * 4096, 2560, 640),
    ("attn proj 1280", 2 * 1024, 1280, 1280),
    ("ff geglu in 1280", 2 * 1024, 1280, 10240),
    ("ff out 1280", 2 * 1024, 5120, 1280),
    ("cross k/v 640", 2 * 77, 2048, 640),
    ("cross k/v 1280", 2 * 77, 2048, 1280),
];

/// Seconds per op of each timed batch.
#[derive(Default)]
struct Times(Mutex<Vec<f64>>);

impl Times {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.sort_by(f64::total_cmp);
        v
    }
}

/// Enqueues `iters` ops and waits for them; returns the elapsed time.
fn timed(dev: &CudaDevice, times: &Times, iters: u64, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        op();
    }
    dev.synchronize().expect("the GPU finished the batch");
    let elapsed = start.elapsed();
    if iters > 0 {
        times.0.lock().unwrap_or_else(|e| e.into_inner()).push(elapsed.as_secs_f64() / iters as f64);
    }
    elapsed
}

fn linear(c: &mut Criterion, dev: &Arc<CudaDevice>) {
    let gpu = Device::Cuda(dev.ordinal());
    for dtype in [DType::BF16, DType::F16] {
        for (i, &(label, m, k, n)) in LINEARS.iter().enumerate() {
            let seed = 10 * i as u64;
            let x = random_tensor(&[m, k], dtype, seed).to_device(gpu).unwrap();
            let w =
                random_tensor(&[n, k], dtype, seed + 1).affine(0.05, 0.0).unwrap().to_device(gpu).unwrap();
            let b = random_tensor(&[n], dtype, seed + 2).to_device(gpu).unwrap();
            let flops = 2.0 * (m * n * k) as f64;
            let id = format!("{label} [{m},{k}]x[{n},{k}]^T+b {dtype}");
            let times = Times::default();
            let mut g = c.benchmark_group("linear");
            g.sample_size(20)
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1))
                .throughput(Throughput::Elements(flops as u64));
            g.bench_function(&id, |bench| {
                bench.iter_custom(|iters| {
                    timed(dev, &times, iters, || {
                        black_box(x.linear(&w, Some(&b)).expect("linear on the GPU"));
                    })
                })
            });
            g.finish();
            let v = times.sorted();
            if let (Some(&best), Some(&median)) = (v.first(), v.get(v.len() / 2)) {
                println!(
                    "linear/{id}: {:.1} TFLOP/s (best {:.1}, {:.3} ms/iter)",
                    flops / median / 1e12,
                    flops / best / 1e12,
                    median * 1e3
                );
            }
        }
    }
}

/// (label, B, L, H, D): the VAE mid-block's self-attention at 512x512 and 1024x1024 images.
const VAE_ATTENTION: [(&str, usize, usize, usize, usize); 2] =
    [("vae mid 64x64", 1, 4096, 1, 512), ("vae mid 128x128", 1, 16384, 1, 512)];

fn unfused_attention(c: &mut Criterion, dev: &Arc<CudaDevice>) {
    let gpu = Device::Cuda(dev.ordinal());
    for (i, &(label, b, l, h, d)) in VAE_ATTENTION.iter().enumerate() {
        let seed = 100 + 10 * i as u64;
        let qkv: Vec<Tensor> = (0..3)
            .map(|j| random_tensor(&[b, l, h, d], DType::BF16, seed + j).to_device(gpu).unwrap())
            .collect();
        let scale = 1.0 / (d as f32).sqrt();
        let flops = 4.0 * (b * h * l * l * d) as f64;
        let id = format!("{label} [{b}, {l}, {h}, {d}] bf16");
        let times = Times::default();
        let mut g = c.benchmark_group("vae attention");
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements(flops as u64));
        g.bench_function(&id, |bench| {
            bench.iter_custom(|iters| {
                timed(dev, &times, iters, || {
                    black_box(
                        Tensor::attention(&qkv[0], &qkv[1], &qkv[2], scale).expect("attention on the GPU"),
                    );
                })
            })
        });
        g.finish();
        let v = times.sorted();
        if let (Some(&best), Some(&median)) = (v.first(), v.get(v.len() / 2)) {
            println!(
                "vae attention/{id}: {:.1} TFLOP/s (best {:.1}, {:.3} ms/iter)",
                flops / median / 1e12,
                flops / best / 1e12,
                median * 1e3
            );
        }
    }
}

fn benches(c: &mut Criterion) {
    let dev = match cuda::device(0) {
        Ok(dev) => dev,
        Err(e) => {
            println!("cuda_ops: skipped, no usable CUDA device: {e}");
            return;
        }
    };
    println!("cuda_ops on {} (sm_{}{})", dev.name(), dev.compute_capability().0, dev.compute_capability().1);
    // Checks the path once before timing it.
    let probe =
        Tensor::full(0.5, &[3, 8], DType::BF16, Device::Cpu).unwrap().to_device(Device::Cuda(0)).unwrap();
    if let Err(e) = probe.linear(&probe, None) {
        println!("cuda_ops: skipped, linear fails on this device: {e}");
        return;
    }
    linear(c, &dev);
    unfused_attention(c, &dev);
    println!("allocator: {:?}", dev.memory_stats());
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
