//! GPU tests of the conv kernels against a plain f64 convolution, on fresh random inputs.
//!
//! Each case runs every variant that supports it (see `ConvVariant::unsupported_reason`) for bf16
//! and f16, with the output poisoned with NaN before the launch so that unwritten elements fail.
//! Skips, saying why, where there is no CUDA driver, no GPU or no NVRTC. The module is compiled
//! with the crate's [`Compiler`] (NVRTC and headers found by `kiln_kernels::locate`) for the
//! device's own architecture.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;
use half::{bf16, f16};
use kiln_kernels::conv::{ConvDims, ConvKernel, ConvVariant, launch_conv2d};
use kiln_kernels::launch::KernelElem;
use kiln_kernels::{Arch, Compiler, Family, KernelDType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Gpu {
    stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
}

/// The device and the conv module compiled for it (through the crate's one compile path,
/// without the on-disk cache), or why not.
fn gpu() -> Result<Gpu, String> {
    // SAFETY: only probes whether the driver library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda) on this machine".into());
    }
    let ctx = CudaContext::new(0).map_err(|e| format!("no CUDA device: {e}"))?;
    let (major, minor) = ctx.compute_capability().map_err(|e| e.to_string())?;
    let compiler = Compiler::new().map_err(|e| e.to_string())?.with_cache_dir(None);
    let arch = compiler.target_for(Arch { major: major as u32, minor: minor as u32 });
    let compiled = compiler.compile(Family::Conv, arch).map_err(|e| e.to_string())?;
    let module =
        ctx.load_module(Ptx::from_src(compiled.ptx)).map_err(|e| format!("loading conv.cu ({arch}): {e}"))?;
    Ok(Gpu { stream: ctx.default_stream(), module })
}

/// Storage-type helpers for the test.
trait TestElem: KernelElem {
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn nan() -> Self;
    /// Unit roundoff of the type.
    const EPS: f64;
}

impl TestElem for bf16 {
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    fn nan() -> Self {
        bf16::NAN
    }
    const EPS: f64 = 1.0 / 256.0;
}

impl TestElem for f16 {
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn nan() -> Self {
        f16::NAN
    }
    const EPS: f64 = 1.0 / 2048.0;
}

/// One test shape, with or without bias and residual.
#[derive(Clone, Copy, Debug)]
struct Case {
    dims: ConvDims,
    bias: bool,
    residual: bool,
}

#[allow(clippy::too_many_arguments)]
fn case(
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    k: (usize, usize),
    stride: usize,
    pad: usize,
) -> Case {
    Case { dims: ConvDims { n, h, w, cin, cout, kh: k.0, kw: k.1, stride, pad }, bias: true, residual: false }
}

fn cases() -> Vec<Case> {
    let with = |c: Case, bias: bool, residual: bool| Case { bias, residual, ..c };
    vec![
        // SD channel counts, odd image sizes (M tails), bias + residual (resnet conv2).
        with(case(2, 9, 7, 320, 320, (3, 3), 1, 1), true, true),
        with(case(1, 11, 13, 640, 640, (3, 3), 1, 1), true, false),
        with(case(1, 5, 6, 1280, 1280, (3, 3), 1, 1), false, true),
        // Several M tiles and a long K loop on the selected 128x64 path.
        with(case(2, 16, 16, 320, 320, (3, 3), 1, 1), true, true),
        // Downsample: stride 2 with odd H/W, padding 1.
        with(case(2, 9, 11, 320, 320, (3, 3), 2, 1), true, false),
        with(case(1, 13, 7, 128, 256, (3, 3), 2, 1), false, false),
        // 1x1 shortcut convs, Cout not a multiple of the tile.
        with(case(2, 10, 7, 640, 320, (1, 1), 1, 0), true, true),
        with(case(1, 9, 9, 24, 200, (1, 1), 1, 0), false, false),
        // Cin smaller than the K tile (chunk wrap over taps), no padding and large padding.
        with(case(1, 8, 9, 16, 40, (3, 3), 1, 0), true, false),
        with(case(1, 6, 5, 8, 18, (3, 3), 1, 2), true, true),
        // SD's first conv (Cin 4; 9 for inpainting), the UNet's last (Cout 4), the VAE's ends.
        with(case(2, 9, 10, 4, 320, (3, 3), 1, 1), true, false),
        with(case(1, 7, 7, 9, 320, (3, 3), 1, 1), true, false),
        with(case(2, 9, 10, 320, 4, (3, 3), 1, 1), true, false),
        with(case(1, 12, 11, 3, 128, (3, 3), 1, 1), true, false),
        with(case(1, 12, 11, 128, 3, (3, 3), 1, 1), true, false),
        // A general shape: rectangular kernel, stride 3, odd channels.
        with(case(1, 14, 13, 5, 7, (5, 3), 3, 2), true, true),
    ]
}

/// `conv(x, w) + bias + residual` in f64 over the values as stored.
fn reference(d: &ConvDims, x: &[f64], w: &[f64], bias: Option<&[f64]>, residual: Option<&[f64]>) -> Vec<f64> {
    let (ho, wo, k) = (d.ho(), d.wo(), d.gemm_k());
    let mut y = vec![0f64; d.output_len()];
    for b in 0..d.n {
        for oy in 0..ho {
            for ox in 0..wo {
                let m = (b * ho + oy) * wo + ox;
                for co in 0..d.cout {
                    let mut s = bias.map_or(0.0, |bv| bv[co]);
                    for ky in 0..d.kh {
                        let iy = (oy * d.stride + ky) as isize - d.pad as isize;
                        if iy < 0 || iy >= d.h as isize {
                            continue;
                        }
                        for kx in 0..d.kw {
                            let ix = (ox * d.stride + kx) as isize - d.pad as isize;
                            if ix < 0 || ix >= d.w as isize {
                                continue;
                            }
                            let xo = ((b * d.h + iy as usize) * d.w + ix as usize) * d.cin;
                            let wo_ = co * k + (ky * d.kw + kx) * d.cin;
                            for ci in 0..d.cin {
                                s += x[xo + ci] * w[wo_ + ci];
                            }
                        }
                    }
                    if let Some(r) = residual {
                        s += r[m * d.cout + co];
                    }
                    y[m * d.cout + co] = s;
                }
            }
        }
    }
    y
}

/// Random values in `[-scale, scale)`, rounded to `T`, and their f64 values.
fn random<T: TestElem>(rng: &mut StdRng, len: usize, scale: f64) -> (Vec<T>, Vec<f64>) {
    let v: Vec<T> = (0..len).map(|_| T::from_f64(rng.random_range(-scale..scale))).collect();
    let f = v.iter().map(|&e| e.to_f64()).collect();
    (v, f)
}

/// Runs `kernel` on `c` and compares with the f64 reference; returns a description of the first
/// mismatches, if any.
/// The inputs of one case (as stored) and the f64 reference output.
struct Inputs<T> {
    x: Vec<T>,
    w: Vec<T>,
    b: Vec<T>,
    r: Vec<T>,
    expect: Vec<f64>,
}

fn inputs<T: TestElem>(c: &Case, seed: u64) -> Inputs<T> {
    let d = c.dims;
    let mut rng = StdRng::seed_from_u64(seed);
    let (x, xf) = random::<T>(&mut rng, d.input_len(), 1.0);
    // Weights scaled by 1/sqrt(K) so outputs stay O(1) whatever K is.
    let (w, wf) = random::<T>(&mut rng, d.weight_len(), 1.0 / (d.gemm_k() as f64).sqrt());
    let (b, bfv) = random::<T>(&mut rng, d.cout, 1.0);
    let (r, rf) = random::<T>(&mut rng, d.output_len(), 1.0);
    let expect = reference(&d, &xf, &wf, c.bias.then_some(&bfv[..]), c.residual.then_some(&rf[..]));
    Inputs { x, w, b, r, expect }
}

fn run_case<T: TestElem>(gpu: &Gpu, kernel: ConvKernel, c: &Case, inp: &Inputs<T>) -> Result<(), String> {
    let d = c.dims;
    let k = d.gemm_k();
    let Inputs { x, w, b, r, expect } = inp;

    let s = &gpu.stream;
    let func = gpu.module.load_function(&kernel.entry()).map_err(|e| format!("{}: {e}", kernel.entry()))?;
    let err = |e: cudarc::driver::DriverError| e.to_string();
    let xd = s.clone_htod(x).map_err(err)?;
    let wd = s.clone_htod(w).map_err(err)?;
    let bd = s.clone_htod(b).map_err(err)?;
    let rd = s.clone_htod(r).map_err(err)?;
    let mut yd = s.clone_htod(&vec![T::nan(); d.output_len()]).map_err(err)?;
    let (bv, rv) = (bd.as_view(), rd.as_view());
    launch_conv2d(
        s,
        &func,
        kernel,
        &xd.as_view(),
        &wd.as_view(),
        c.bias.then_some(&bv),
        c.residual.then_some(&rv),
        &mut yd.as_view_mut(),
        d,
    )
    .map_err(|e| e.to_string())?;
    let got: Vec<T> = s.clone_dtoh(&yd).map_err(err)?;
    s.synchronize().map_err(err)?;

    // Error budget: the final rounding to T (eps * |y|), the rounding of f32 products/sums
    // (negligible next to T's), and a margin growing like sqrt(K) for the accumulation order.
    let mut bad = Vec::new();
    let mut count = 0usize;
    for (i, (&g, &e)) in got.iter().zip(expect).enumerate() {
        let g = g.to_f64();
        let tol = 2.0 * T::EPS * e.abs().max(1.0) + 5e-6 * (k as f64).sqrt();
        // NaN (the poison) compares false, so it counts as a mismatch.
        if (g - e).abs() <= tol {
            continue;
        }
        count += 1;
        if bad.len() < 8 {
            let (m, co) = (i / d.cout, i % d.cout);
            bad.push(format!("  y[m={m}, co={co}] = {g}, expected {e} (tol {tol:.2e})"));
        }
    }
    if count == 0 {
        Ok(())
    } else {
        Err(format!("{count} of {} outputs wrong; first:\n{}", got.len(), bad.join("\n")))
    }
}

fn run_all<T: TestElem>(gpu: &Gpu) {
    let mut failures = Vec::new();
    let mut runs = 0;
    for (ci, c) in cases().iter().enumerate() {
        let inp = inputs::<T>(c, 1000 + ci as u64);
        for variant in ConvVariant::ALL {
            if variant.unsupported_reason(&c.dims).is_some() {
                continue;
            }
            let kernel = ConvKernel { dtype: T::DTYPE, variant };
            runs += 1;
            if let Err(e) = run_case::<T>(gpu, kernel, c, &inp) {
                failures
                    .push(format!("{kernel} on {} (bias {}, residual {}): {e}", c.dims, c.bias, c.residual));
            }
        }
        // select() must always pick a variant that supports the shape.
        let chosen = ConvKernel::select(T::DTYPE, &c.dims);
        assert!(chosen.variant.unsupported_reason(&c.dims).is_none(), "{chosen} selected for {}", c.dims);
    }
    println!("conv2d {}: {runs} runs, {} failed", T::DTYPE, failures.len());
    assert!(failures.is_empty(), "conv2d {} mismatches:\n{}", T::DTYPE, failures.join("\n"));
}

fn with_gpu(f: impl FnOnce(&Gpu)) {
    match gpu() {
        Ok(g) => f(&g),
        Err(why) => kiln_kernels::skip_gpu_test("conv GPU test", &why),
    }
}

#[test]
fn conv2d_bf16_matches_f64_reference() {
    with_gpu(run_all::<bf16>);
}

#[test]
fn conv2d_f16_matches_f64_reference() {
    with_gpu(run_all::<f16>);
}

#[test]
fn launcher_refuses_bad_requests() {
    with_gpu(|gpu| {
        let s = &gpu.stream;
        let d = ConvDims { n: 1, h: 4, w: 4, cin: 4, cout: 6, kh: 3, kw: 3, stride: 1, pad: 1 };
        let tiled = ConvKernel { dtype: KernelDType::BF16, variant: ConvVariant::Tiled128x64 };
        let func = gpu.module.load_function(&tiled.entry()).unwrap();
        let x = s.alloc_zeros::<bf16>(d.input_len()).unwrap();
        let w = s.alloc_zeros::<bf16>(d.weight_len()).unwrap();
        let mut y = s.alloc_zeros::<bf16>(d.output_len()).unwrap();
        // Cin = 4 is not a multiple of 8: the tiled path refuses.
        let r =
            launch_conv2d(s, &func, tiled, &x.as_view(), &w.as_view(), None, None, &mut y.as_view_mut(), d);
        assert!(matches!(r, Err(kiln_kernels::conv::ConvError::Unsupported { .. })), "{r:?}");
        // Wrong output length.
        let generic = ConvKernel { dtype: KernelDType::BF16, variant: ConvVariant::Generic };
        let gfunc = gpu.module.load_function(&generic.entry()).unwrap();
        let mut short = s.alloc_zeros::<bf16>(d.output_len() - 1).unwrap();
        let r = launch_conv2d(
            s,
            &gfunc,
            generic,
            &x.as_view(),
            &w.as_view(),
            None,
            None,
            &mut short.as_view_mut(),
            d,
        );
        assert!(matches!(r, Err(kiln_kernels::conv::ConvError::BufferLen { name: "y", .. })), "{r:?}");
        // f16 kernel with bf16 buffers.
        let f16k = ConvKernel { dtype: KernelDType::F16, variant: ConvVariant::Generic };
        let r =
            launch_conv2d(s, &gfunc, f16k, &x.as_view(), &w.as_view(), None, None, &mut y.as_view_mut(), d);
        assert!(matches!(r, Err(kiln_kernels::conv::ConvError::DType { .. })), "{r:?}");
    });
}
