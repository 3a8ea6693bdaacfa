//! CPU op benches at SD-like shapes, sized for a small machine.
//!
//! Run: `cargo bench -p kiln-benches --bench cpu_ops` (filter with a trailing name, e.g.
//! `-- conv`). Each case prints `group/case: RATE`; compute-bound ops report GFLOP/s
//! (criterion's "elem/s" is FLOP/s for them) and memory-bound ops GB/s. The `gemm alone`
//! group times the bare `gemm::gemm` call on exactly the products that linear and conv
//! reduce to, so the overhead of the op around its GEMM can be read off.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use kiln_benches::{Samples, Work, random_f32, random_tensor, report};
use kiln_runtime::ops::Conv2dParams;
use kiln_runtime::{DType, Tensor};

/// Times `f` as `group/id` and prints its rate.
fn case(c: &mut Criterion, group: &str, id: &str, work: Work, mut f: impl FnMut()) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .throughput(match work {
            Work::Flops(n) => Throughput::Elements(n),
            Work::Bytes(n) => Throughput::Bytes(n),
        });
    let samples = Samples::default();
    g.bench_function(id, |b| b.iter_custom(|iters| samples.time(iters, &mut f)));
    g.finish();
    report(&format!("{group}/{id}"), work, &samples);
}

/// Bytes of `elems` elements of `dtype`.
fn bytes(elems: usize, dtype: DType) -> u64 {
    (elems * dtype.size_in_bytes()) as u64
}

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn linear(c: &mut Criterion) {
    // SD 1.5's feed-forward at 64x64, SDXL's GEGLU at 32x32 (batch 2 for CFG), f32 only.
    for (m, k, n) in [(4096, 320, 1280), (2048, 1280, 10240)] {
        let dtypes: &[DType] = if k == 320 { &DTYPES } else { &[DType::F32] };
        for &dtype in dtypes {
            linear_case(c, (m, k, n), dtype);
        }
    }
}

fn linear_case(c: &mut Criterion, (m, k, n): (usize, usize, usize), dtype: DType) {
    let x = random_tensor(&[m, k], dtype, 1);
    let w = random_tensor(&[n, k], dtype, 2);
    let b = random_tensor(&[n], dtype, 3);
    let work = Work::Flops(2 * (m * n * k) as u64);
    case(c, "linear", &format!("[{m},{k}]x[{n},{k}]^T+b {dtype}"), work, || {
        black_box(x.linear(&w, Some(&b)).unwrap());
    });
}

fn conv(c: &mut Criterion) {
    const F32: &[DType] = &[DType::F32];
    // NHWC input, output channels, square kernel, stride, padding, dtypes.
    let cases: [([usize; 4], usize, usize, usize, usize, &[DType]); 6] = [
        ([1, 64, 64, 320], 320, 3, 1, 1, &DTYPES),
        ([1, 64, 64, 320], 320, 3, 2, 1, F32),
        // The SD 1.5 UNet's deepest convolutions at batch 2 (one CFG step): few pixels, big weights.
        ([2, 16, 16, 1280], 1280, 3, 1, 1, F32),
        ([2, 8, 8, 1280], 1280, 3, 1, 1, F32),
        // The SD 1.5 VAE decoder's last block: a wide image, few channels (128 = 2⅔ panels).
        ([1, 256, 256, 128], 128, 3, 1, 1, F32),
        ([1, 64, 64, 320], 320, 1, 1, 0, F32),
    ];
    for (input, cout, k, stride, padding, dtypes) in cases {
        let [n, h, w, cin] = input;
        for &dtype in dtypes {
            let x = random_tensor(&input, dtype, 4);
            let wt = random_tensor(&[cout, k, k, cin], dtype, 5);
            let b = random_tensor(&[cout], dtype, 6);
            let (ho, wo) = ((h + 2 * padding - k) / stride + 1, (w + 2 * padding - k) / stride + 1);
            let work = Work::Flops(2 * (n * ho * wo * cout * k * k * cin) as u64);
            let id = format!("{k}x{k} s{stride} {input:?}->{cout} {dtype}");
            case(c, "conv2d", &id, work, || {
                black_box(x.conv2d(&wt, Some(&b), Conv2dParams { stride, padding }).unwrap());
            });
        }
    }
}

/// The bare f32 GEMMs that linear and conv reduce to: `dst[m, n] = lhs[m, k] * rhs^T` with
/// `rhs` stored `[n, k]`, as the ops call it.
fn gemm_alone(c: &mut Criterion) {
    let shapes = [
        ("linear [4096,320]x[1280,320]^T", 4096, 1280, 320),
        ("conv 3x3 s1 64x64x320->320 (im2col K=2880)", 4096, 320, 2880),
        ("conv 3x3 s2 64x64x320->320 (im2col K=2880)", 1024, 320, 2880),
        ("conv 1x1 64x64x320->320", 4096, 320, 320),
    ];
    for (name, m, n, k) in shapes {
        let lhs = random_f32(m * k, 7);
        let rhs = random_f32(n * k, 8);
        let mut dst = vec![0f32; m * n];
        case(
            c,
            "gemm alone",
            &format!("{name}: m{m} n{n} k{k} f32"),
            Work::Flops(2 * (m * n * k) as u64),
            || {
                // SAFETY: lhs is [m, k], rhs [n, k] read transposed, dst [m, n], all row-major
                // buffers of exactly those sizes.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        dst.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        lhs.as_ptr(),
                        1,
                        k as isize,
                        rhs.as_ptr(),
                        k as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(0),
                    )
                };
                black_box(&dst);
            },
        );
    }
}

fn attention(c: &mut Criterion) {
    // (B, Lq, Lk, H, D)
    let cases = [
        (1, 1024, 1024, 8, 40),
        (1, 1024, 1024, 8, 64),
        (1, 4096, 4096, 8, 40),
        (1, 4096, 77, 8, 40),
        (1, 1024, 77, 8, 64),
    ];
    for (b, lq, lk, h, d) in cases {
        for dtype in [DType::F32, DType::F16] {
            if dtype == DType::F16 && lq * lk > 1 << 22 {
                continue; // one f16 run of the largest case is not worth the time on two cores
            }
            let q = random_tensor(&[b, lq, h, d], dtype, 9);
            let k = random_tensor(&[b, lk, h, d], dtype, 10);
            let v = random_tensor(&[b, lk, h, d], dtype, 11);
            let work = Work::Flops(4 * (b * h * lq * lk * d) as u64);
            let id = format!("B{b} H{h} Lq{lq} Lk{lk} D{d} {dtype}");
            let scale = 1.0 / (d as f32).sqrt();
            case(c, "attention", &id, work, || {
                black_box(Tensor::attention(&q, &k, &v, scale).unwrap());
            });
        }
    }
}

fn norms(c: &mut Criterion) {
    for dtype in [DType::F32, DType::F16] {
        let shape = [1, 64, 64, 320];
        let n: usize = shape.iter().product();
        let x = random_tensor(&shape, dtype, 12);
        let (g, b) = (random_tensor(&[320], dtype, 13), random_tensor(&[320], dtype, 14));
        case(
            c,
            "group_norm",
            &format!("{shape:?} 32 groups + SiLU {dtype}"),
            Work::Bytes(2 * bytes(n, dtype)),
            || {
                black_box(x.group_norm(32, &g, &b, 1e-5, true).unwrap());
            },
        );
        let shape = [1, 4096, 320];
        let x = x.reshape(&shape).unwrap();
        case(c, "layer_norm", &format!("{shape:?} {dtype}"), Work::Bytes(2 * bytes(n, dtype)), || {
            black_box(x.layer_norm(&g, &b, 1e-5).unwrap());
        });
        let shape = [1024, 1024];
        let x = random_tensor(&shape, dtype, 15);
        case(c, "softmax", &format!("{shape:?} {dtype}"), Work::Bytes(2 * bytes(1 << 20, dtype)), || {
            black_box(x.softmax().unwrap());
        });
    }
}

fn elementwise(c: &mut Criterion) {
    for dtype in [DType::F32, DType::F16] {
        let shape = [1024, 1024];
        let n = 1 << 20;
        let x = random_tensor(&shape, dtype, 16);
        let rw = Work::Bytes(2 * bytes(n, dtype));
        case(c, "gelu", &format!("{shape:?} {dtype}"), rw, || drop(black_box(x.gelu().unwrap())));
        case(c, "silu", &format!("{shape:?} {dtype}"), rw, || drop(black_box(x.silu().unwrap())));
        let g = random_tensor(&[1024, 2048], dtype, 17);
        case(c, "geglu", &format!("[1024, 2048] {dtype}"), Work::Bytes(3 * bytes(n, dtype)), || {
            drop(black_box(g.geglu().unwrap()))
        });
        let y = random_tensor(&shape, dtype, 18);
        case(c, "add", &format!("{shape:?} + {shape:?} {dtype}"), Work::Bytes(3 * bytes(n, dtype)), || {
            drop(black_box(x.add(&y).unwrap()))
        });
        let img = random_tensor(&[1, 64, 64, 320], dtype, 19);
        let bias = random_tensor(&[320], dtype, 20);
        let m = 64 * 64 * 320;
        case(
            c,
            "add",
            &format!("[1, 64, 64, 320] + [320] {dtype}"),
            Work::Bytes(2 * bytes(m, dtype)),
            || drop(black_box(img.add(&bias).unwrap())),
        );
        case(c, "mul", &format!("{shape:?} * {shape:?} {dtype}"), Work::Bytes(3 * bytes(n, dtype)), || {
            drop(black_box(x.mul(&y).unwrap()))
        });
    }
}

fn layout(c: &mut Criterion) {
    for dtype in [DType::F32, DType::F16] {
        let x = random_tensor(&[1, 32, 32, 640], dtype, 21);
        let n = 32 * 32 * 640;
        case(
            c,
            "upsample_nearest2x",
            &format!("[1, 32, 32, 640] {dtype}"),
            Work::Bytes(5 * bytes(n, dtype)),
            || drop(black_box(x.upsample_nearest2x().unwrap())),
        );
        let a = random_tensor(&[1, 64, 64, 320], dtype, 22);
        let b = random_tensor(&[1, 64, 64, 320], dtype, 23);
        let m = 64 * 64 * 320;
        case(
            c,
            "concat",
            &format!("2x [1, 64, 64, 320] dim 3 {dtype}"),
            Work::Bytes(4 * bytes(m, dtype)),
            || drop(black_box(Tensor::concat(&[&a, &b], 3).unwrap())),
        );
    }
}

criterion_group!(benches, linear, conv, gemm_alone, attention, norms, elementwise, layout);
criterion_main!(benches);
