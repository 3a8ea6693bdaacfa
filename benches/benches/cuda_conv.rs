//! conv2d implicit-GEMM kernels at SDXL's 3x3 shapes, against cuBLAS on the equivalent GEMM.
//!
//! Run: `cargo bench -p kiln-benches --features cuda --bench cuda_conv` (headers for NVRTC from
//! `$KILN_CUDA_INCLUDE`, else `/usr/local/cuda/include`). Shapes: batch 2, 128x128x320,
//! 64x64x640 and 32x32x1280, 3x3, stride 1, padding 1, Cout = Cin, bias fused. Each kernel
//! variant that supports the shape is timed with CUDA events around a batch of launches, and so
//! is `cublasGemmEx` on the same `[M, K] x [K, Cout]` product (M = N*H*W, K = 9*Cin; f32 compute).
//! Prints one line per case: `conv2d_bf16_tiled_128x64 2x128x128x320: X TFLOP/s (median), best Y`,
//! and the ratio to cuBLAS. Criterion's "elem/s" is FLOP/s here. Skips, saying why, without a GPU.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys::cublasOperation_t};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaContext, CudaModule, CudaSlice, CudaStream};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use half::bf16;
use kiln_kernels::conv::{ConvDims, ConvKernel, ConvVariant, launch_conv2d};
use kiln_kernels::{Family, KernelDType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// SDXL's 3x3 convs at a 128x128 latent, batch 2 (CFG): (h = w, channels).
const SHAPES: [(usize, usize); 3] = [(128, 320), (64, 640), (32, 1280)];

struct Gpu {
    stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
}

fn gpu() -> Result<Gpu, String> {
    // SAFETY: only probes whether the shared libraries can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda)".into());
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err("no NVRTC library".into());
    }
    let ctx = CudaContext::new(0).map_err(|e| format!("no CUDA device: {e}"))?;
    let (major, minor) = ctx.compute_capability().map_err(|e| e.to_string())?;
    let include = std::env::var("KILN_CUDA_INCLUDE")
        .into_iter()
        .chain(["/usr/local/cuda/include".to_string()])
        .find(|d| std::path::Path::new(d).join("cuda_bf16.h").exists())
        .ok_or("no CUDA headers: set KILN_CUDA_INCLUDE")?;
    let opts = CompileOptions {
        include_paths: vec![include],
        options: vec![
            format!("--gpu-architecture=sm_{major}{minor}"),
            "--std=c++17".into(),
            "-default-device".into(),
        ],
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(Family::Conv.source(), opts).map_err(|e| format!("NVRTC: {e:?}"))?;
    let module = ctx.load_module(ptx).map_err(|e| e.to_string())?;
    Ok(Gpu { stream: ctx.default_stream(), module })
}

fn upload(s: &Arc<CudaStream>, len: usize, scale: f32, seed: u64) -> CudaSlice<bf16> {
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<bf16> = (0..len).map(|_| bf16::from_f32(rng.random_range(-scale..scale))).collect();
    s.clone_htod(&v).expect("upload")
}

/// Times `launch` with CUDA events over criterion's batches; returns the median and best seconds
/// per launch.
fn time_gpu(c: &mut Criterion, s: &CudaStream, id: &str, flops: f64, mut launch: impl FnMut()) -> (f64, f64) {
    let per_iter = Mutex::new(Vec::<f64>::new());
    let mut g = c.benchmark_group("cuda_conv");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .throughput(Throughput::Elements(flops as u64));
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = s.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).expect("event");
            for _ in 0..iters {
                launch();
            }
            let end = s.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).expect("event");
            let secs = start.elapsed_ms(&end).expect("elapsed") as f64 / 1e3;
            if iters > 0 {
                per_iter.lock().unwrap().push(secs / iters as f64);
            }
            Duration::from_secs_f64(secs)
        })
    });
    g.finish();
    let mut v = per_iter.into_inner().unwrap();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn bench(c: &mut Criterion) {
    let gpu = match gpu() {
        Ok(g) => g,
        Err(why) => {
            println!("skipping cuda_conv: {why}");
            return;
        }
    };
    let s = &gpu.stream;
    let blas = CudaBlas::new(s.clone()).expect("cuBLAS");
    for (i, &(hw, ch)) in SHAPES.iter().enumerate() {
        let d = ConvDims { n: 2, h: hw, w: hw, cin: ch, cout: ch, kh: 3, kw: 3, stride: 1, pad: 1 };
        let (m, k, flops) = (d.gemm_m(), d.gemm_k(), d.flops());
        let shape = format!("{}x{}x{}x{}", d.n, d.h, d.w, d.cin);
        let seed = 10 * i as u64;
        let x = upload(s, d.input_len(), 1.0, seed);
        let w = upload(s, d.weight_len(), 1.0 / (k as f32).sqrt(), seed + 1);
        let bias = upload(s, d.cout, 1.0, seed + 2);
        let mut y = s.alloc_zeros::<bf16>(d.output_len()).expect("alloc");

        // cuBLAS, column-major: C^T [Cout, M] = W [Cout, K] (row-major = col-major K x Cout, so
        // op T) times A^T (row-major A [M, K] = col-major K x M, op N). A is an im2col-sized buffer
        // of random values (only the product's speed matters here).
        let a = upload(s, m * k, 1.0, seed + 3);
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: d.cout as i32,
            n: m as i32,
            k: k as i32,
            alpha: bf16::ONE,
            lda: k as i32,
            ldb: k as i32,
            beta: bf16::ZERO,
            ldc: d.cout as i32,
        };
        let (cublas_med, _) = time_gpu(c, s, &format!("cublas_gemm {shape}"), flops, || {
            // SAFETY: w is [Cout, K], a is [M, K], y is [M, Cout]: the extents the config names.
            unsafe { blas.gemm(cfg, &w, &a, &mut y) }.expect("cublas gemm");
        });
        println!(
            "cublas_gemm_bf16 {shape} (M {m}, N {}, K {k}): {:.1} TFLOP/s",
            d.cout,
            flops / cublas_med / 1e12
        );
        drop(a);

        let selected = ConvKernel::select(KernelDType::BF16, &d);
        for variant in ConvVariant::ALL {
            if variant.unsupported_reason(&d).is_some() {
                continue;
            }
            let kernel = ConvKernel { dtype: KernelDType::BF16, variant };
            let func = gpu.module.load_function(&kernel.entry()).expect("entry");
            let (med, best) = time_gpu(c, s, &format!("{kernel} {shape}"), flops, || {
                let bv = bias.as_view();
                launch_conv2d(
                    s,
                    &func,
                    kernel,
                    &x.as_view(),
                    &w.as_view(),
                    Some(&bv),
                    None,
                    &mut y.as_view_mut(),
                    d,
                )
                .expect("conv launch");
            });
            println!(
                "{kernel} {shape}: {:.1} TFLOP/s (best {:.1}), {:.0}% of cuBLAS{}",
                flops / med / 1e12,
                flops / best / 1e12,
                100.0 * cublas_med / med,
                if kernel == selected { " [selected]" } else { "" }
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
