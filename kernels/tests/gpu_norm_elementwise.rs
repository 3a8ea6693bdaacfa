//! The norm and elementwise kernels against the CPU backend (kiln-runtime's ops, the
//! reference), on fresh random inputs, bf16 and f16, odd sizes included, with the output
//! poisoned (NaN) before each launch so unwritten elements fail.
//!
//! Needs a GPU: without a CUDA driver, a device or NVRTC each test says why and passes.
//! With `KILN_REQUIRE_GPU=1` they fail instead.

use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use half::{bf16, f16};
use kiln_kernels::elementwise::{self as ew, CastType, ElementwiseKernel, ElementwiseOp, TimestepParams};
use kiln_kernels::launch::KernelElem;
use kiln_kernels::norm::{
    self, CausalMask, GroupNormDims, GroupNormFunctions, LayerNormDims, NormKernel, NormOp, SoftmaxDims,
};
use kiln_kernels::{Compiler, KernelDType, KernelModules};
use kiln_runtime::ops::TimestepEmbeddingParams;
use kiln_runtime::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Gpu {
    stream: Arc<CudaStream>,
    modules: KernelModules,
}

/// The GPU, or `None` after printing why the test is skipped.
fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    let g = GPU.get_or_init(|| {
        // SAFETY: only tries to open libcuda by its usual names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("no CUDA driver (libcuda)".into());
        }
        let ctx = CudaContext::new(0).map_err(|e| format!("no CUDA device: {e}"))?;
        let compiler = Compiler::new().map_err(|e| e.to_string())?;
        let modules = KernelModules::load(&ctx, &compiler).map_err(|e| e.to_string())?;
        Ok(Gpu { stream: ctx.default_stream(), modules })
    });
    match g {
        Ok(g) => Some(g),
        Err(why) => {
            kiln_kernels::skip_gpu_test("GPU kernel test", why);
            None
        }
    }
}

/// The storage types under test, with their runtime dtype and tolerance.
trait Elem: KernelElem {
    const RT: DType;
    /// (absolute, relative) tolerance: a couple of units in the last place of the type.
    const TOL: (f32, f32);
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
}

impl Elem for bf16 {
    const RT: DType = DType::BF16;
    const TOL: (f32, f32) = (1e-2, 1e-2);
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

impl Elem for f16 {
    const RT: DType = DType::F16;
    const TOL: (f32, f32) = (2e-3, 2e-3);
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// Seeded uniform values in `[lo, hi)`, rounded to `T` (so CPU and GPU see the same inputs).
fn random<T: Elem>(n: usize, seed: u64, (lo, hi): (f32, f32)) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| T::from_f32(rng.random_range(lo..hi)).to_f32()).collect()
}

fn upload<T: Elem>(s: &Arc<CudaStream>, v: &[f32]) -> CudaSlice<T> {
    let host: Vec<T> = v.iter().map(|&x| T::from_f32(x)).collect();
    s.clone_htod(&host).unwrap()
}

/// A device buffer of `n` NaNs: elements a kernel fails to write stay NaN and fail the check.
fn poisoned<T: Elem>(s: &Arc<CudaStream>, n: usize) -> CudaSlice<T> {
    upload::<T>(s, &vec![f32::NAN; n])
}

fn download<T: Elem>(s: &Arc<CudaStream>, d: &CudaSlice<T>) -> Vec<f32> {
    s.clone_dtoh(d).unwrap().into_iter().map(T::to_f32).collect()
}

fn cpu<T: Elem>(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_f32(v.to_vec(), shape, T::RT, Device::Cpu).unwrap()
}

/// Compares with the dtype's tolerance, printing the first mismatches.
fn check<T: Elem>(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (atol, rtol) = T::TOL;
    // Written so that a NaN (an unwritten, poisoned element) counts as a mismatch.
    let close = |i: usize| (got[i] - want[i]).abs() <= atol + rtol * want[i].abs();
    let bad: Vec<usize> = (0..got.len()).filter(|&i| !close(i)).collect();
    if !bad.is_empty() {
        let first: Vec<String> =
            bad.iter().take(8).map(|&i| format!("[{i}] gpu {} cpu {}", got[i], want[i])).collect();
        panic!(
            "{what} ({:?}): {} of {} elements differ; first: {}",
            T::DTYPE,
            bad.len(),
            got.len(),
            first.join(", ")
        );
    }
}

fn ew_fn(g: &Gpu, op: ElementwiseOp, dtype: KernelDType) -> cudarc::driver::CudaFunction {
    g.modules.elementwise(ElementwiseKernel::Op { op, dtype }).unwrap()
}

fn group_norm_case<T: Elem>(
    g: &Gpu,
    (n, l, c, groups): (usize, usize, usize, usize),
    silu: bool,
    offset: f32,
) {
    let s = &g.stream;
    let f = |op| g.modules.norm(NormKernel { op, dtype: T::DTYPE }).unwrap();
    let (stats, finalize, apply) =
        (f(NormOp::GroupNormStats), f(NormOp::GroupNormFinalize), f(NormOp::GroupNormApply));
    let x = random::<T>(n * l * c, 1, (offset - 1.0, offset + 1.0));
    let (gamma, beta) = (random::<T>(c, 2, (0.5, 1.5)), random::<T>(c, 3, (-0.5, 0.5)));
    let dims = GroupNormDims { n, l, c, groups, eps: 1e-5, silu };
    let (xd, gd, bd) = (upload::<T>(s, &x), upload::<T>(s, &gamma), upload::<T>(s, &beta));
    let mut y = poisoned::<T>(s, n * l * c);
    let mut ws = s.alloc_zeros::<f32>(dims.workspace_len()).unwrap();
    let funcs = GroupNormFunctions { stats: &stats, finalize: &finalize, apply: &apply };
    norm::launch_group_norm(
        s,
        funcs,
        &xd.as_view(),
        &gd.as_view(),
        &bd.as_view(),
        &mut y.as_view_mut(),
        &mut ws.as_view_mut(),
        dims,
    )
    .unwrap();
    let want = cpu::<T>(&x, &[n, l, c])
        .group_norm(groups, &cpu::<T>(&gamma, &[c]), &cpu::<T>(&beta, &[c]), 1e-5, silu)
        .unwrap()
        .to_vec_f32()
        .unwrap();
    check::<T>(&format!("group_norm {dims:?}"), &download(s, &y), &want);
}

fn norms<T: Elem>(g: &Gpu) {
    // SDXL-like channel counts, odd position counts, several chunks, a large mean, the scalar path.
    group_norm_case::<T>(g, (2, 7 * 5, 320, 32), true, 0.0);
    group_norm_case::<T>(g, (2, 33 * 31, 640, 32), false, 0.0);
    group_norm_case::<T>(g, (1, 9 * 9, 1280, 32), true, 0.0);
    group_norm_case::<T>(g, (2, 129, 64, 32), false, 20.0);
    group_norm_case::<T>(g, (1, 33, 12, 3), true, 0.0);
    group_norm_case::<T>(g, (3, 1, 8, 2), false, 0.0);

    let s = &g.stream;
    let ln = g.modules.norm(NormKernel { op: NormOp::LayerNorm, dtype: T::DTYPE }).unwrap();
    for (rows, c) in [(37, 320), (5, 77), (3, 1280), (1, 2048)] {
        let x = random::<T>(rows * c, 4, (-2.0, 2.0));
        let (gamma, beta) = (random::<T>(c, 5, (0.5, 1.5)), random::<T>(c, 6, (-0.5, 0.5)));
        let (xd, gd, bd) = (upload::<T>(s, &x), upload::<T>(s, &gamma), upload::<T>(s, &beta));
        let mut y = poisoned::<T>(s, rows * c);
        let dims = LayerNormDims { rows, c, eps: 1e-5 };
        norm::launch_layer_norm(
            s,
            &ln,
            &xd.as_view(),
            &gd.as_view(),
            &bd.as_view(),
            &mut y.as_view_mut(),
            dims,
        )
        .unwrap();
        let want = cpu::<T>(&x, &[rows, c])
            .layer_norm(&cpu::<T>(&gamma, &[c]), &cpu::<T>(&beta, &[c]), 1e-5)
            .unwrap()
            .to_vec_f32()
            .unwrap();
        check::<T>(&format!("layer_norm {dims:?}"), &download(s, &y), &want);
    }
}

fn unary_and_geglu<T: Elem>(g: &Gpu) {
    let s = &g.stream;
    let dt = T::DTYPE;
    for n in [1, 16, 1000, 100_003] {
        let x = random::<T>(n, 7, (-5.0, 5.0));
        let xd = upload::<T>(s, &x);
        let t = cpu::<T>(&x, &[n]);
        let mut y = poisoned::<T>(s, n);
        ew::launch_gelu(s, &ew_fn(g, ElementwiseOp::Gelu, dt), &xd.as_view(), &mut y.as_view_mut()).unwrap();
        check::<T>(&format!("gelu n={n}"), &download(s, &y), &t.gelu().unwrap().to_vec_f32().unwrap());
        let mut y = poisoned::<T>(s, n);
        ew::launch_silu(s, &ew_fn(g, ElementwiseOp::Silu, dt), &xd.as_view(), &mut y.as_view_mut()).unwrap();
        check::<T>(&format!("silu n={n}"), &download(s, &y), &t.silu().unwrap().to_vec_f32().unwrap());
        let mut y = poisoned::<T>(s, n);
        let f = ew_fn(g, ElementwiseOp::Affine, dt);
        ew::launch_affine(s, &f, &xd.as_view(), &mut y.as_view_mut(), 0.18215, -0.5).unwrap();
        check::<T>(
            &format!("affine n={n}"),
            &download(s, &y),
            &t.affine(0.18215, -0.5).unwrap().to_vec_f32().unwrap(),
        );
    }
    for (rows, hidden) in [(13, 40), (3, 7), (2 * 77, 1280)] {
        let x = random::<T>(rows * 2 * hidden, 8, (-3.0, 3.0));
        let mut y = poisoned::<T>(s, rows * hidden);
        let f = ew_fn(g, ElementwiseOp::Geglu, dt);
        ew::launch_geglu(s, &f, &upload::<T>(s, &x).as_view(), &mut y.as_view_mut(), rows, hidden).unwrap();
        let want = cpu::<T>(&x, &[rows, 2 * hidden]).geglu().unwrap().to_vec_f32().unwrap();
        check::<T>(&format!("geglu {rows}x{hidden}"), &download(s, &y), &want);
    }
}

fn binary<T: Elem>(g: &Gpu) {
    let s = &g.stream;
    let cases: [(&[usize], &[usize]); 6] = [
        (&[2, 5, 7, 16], &[2, 5, 7, 16]),
        (&[2, 5, 7, 320], &[320]),
        (&[2, 5, 7, 24], &[2, 1, 1, 24]),
        (&[2, 1, 4], &[3, 1]),
        (&[3, 5, 7], &[1]),
        (&[4, 9, 13], &[4, 9, 13]),
    ];
    for (a_dims, b_dims) in cases {
        let (na, nb) = (a_dims.iter().product::<usize>(), b_dims.iter().product::<usize>());
        let (a, b) = (random::<T>(na, 9, (-2.0, 2.0)), random::<T>(nb, 10, (-2.0, 2.0)));
        let (ad, bd) = (upload::<T>(s, &a), upload::<T>(s, &b));
        let (ta, tb) = (cpu::<T>(&a, a_dims), cpu::<T>(&b, b_dims));
        for (op, want) in
            [(ElementwiseOp::Add, ta.add(&tb).unwrap()), (ElementwiseOp::Mul, ta.mul(&tb).unwrap())]
        {
            let mut out = poisoned::<T>(s, want.elem_count());
            let f = ew_fn(g, op, T::DTYPE);
            ew::launch_binary(
                s,
                &f,
                (&ad.as_view(), a_dims),
                (&bd.as_view(), b_dims),
                &mut out.as_view_mut(),
            )
            .unwrap();
            check::<T>(
                &format!("{op:?} {a_dims:?} {b_dims:?}"),
                &download(s, &out),
                &want.to_vec_f32().unwrap(),
            );
        }
    }
}

fn layout<T: Elem>(g: &Gpu) {
    let s = &g.stream;
    for shape in [[2, 3, 5, 16], [1, 2, 2, 3], [2, 8, 8, 320]] {
        let n: usize = shape.iter().product();
        let x = random::<T>(n, 11, (-1.0, 1.0));
        let mut y = poisoned::<T>(s, 4 * n);
        let f = ew_fn(g, ElementwiseOp::UpsampleNearest2x, T::DTYPE);
        ew::launch_upsample_nearest2x(s, &f, &upload::<T>(s, &x).as_view(), &mut y.as_view_mut(), shape)
            .unwrap();
        let want = cpu::<T>(&x, &shape).upsample_nearest2x().unwrap().to_vec_f32().unwrap();
        check::<T>(&format!("upsample {shape:?}"), &download(s, &y), &want);
    }
    // Along the channels (the UNet's skip connections) and along a middle dimension.
    let cases: [(&[usize], &[usize], usize); 3] =
        [(&[2, 3, 5, 16], &[2, 3, 5, 8], 3), (&[2, 3, 5, 5], &[2, 3, 5, 3], 3), (&[2, 3, 4], &[2, 6, 4], 1)];
    for (a_dims, b_dims, dim) in cases {
        let (na, nb) = (a_dims.iter().product::<usize>(), b_dims.iter().product::<usize>());
        let (a, b) = (random::<T>(na, 12, (-1.0, 1.0)), random::<T>(nb, 13, (-1.0, 1.0)));
        let outer: usize = a_dims[..dim].iter().product();
        let blocks = (outer, na / outer, nb / outer);
        let mut out = poisoned::<T>(s, na + nb);
        let f = ew_fn(g, ElementwiseOp::Concat, T::DTYPE);
        let (ad, bd) = (upload::<T>(s, &a), upload::<T>(s, &b));
        ew::launch_concat(s, &f, &ad.as_view(), &bd.as_view(), &mut out.as_view_mut(), blocks).unwrap();
        let (ta, tb) = (cpu::<T>(&a, a_dims), cpu::<T>(&b, b_dims));
        let want = Tensor::concat(&[&ta, &tb], dim).unwrap().to_vec_f32().unwrap();
        check::<T>(&format!("concat {a_dims:?} {b_dims:?} dim {dim}"), &download(s, &out), &want);
    }
}

fn timesteps<T: Elem>(g: &Gpu) {
    let s = &g.stream;
    let t = [0.0f32, 1.0, 17.0, 500.5, 999.0];
    let td = s.clone_htod(&t).unwrap();
    let params = [
        TimestepEmbeddingParams::default(),
        TimestepEmbeddingParams { flip_sin_to_cos: false, downscale_freq_shift: 1.0, max_period: 10_000 },
    ];
    for (dim, p) in [(320, params[0]), (7, params[0]), (256, params[1])] {
        let mut out = poisoned::<T>(s, t.len() * dim);
        let kp = TimestepParams {
            flip_sin_to_cos: p.flip_sin_to_cos,
            downscale_freq_shift: p.downscale_freq_shift,
            max_period: p.max_period,
        };
        let f = ew_fn(g, ElementwiseOp::TimestepEmbedding, T::DTYPE);
        ew::launch_timestep_embedding(s, &f, &td.as_view(), &mut out.as_view_mut(), dim, kp).unwrap();
        let want = Tensor::timestep_embedding(&t, dim, p, T::RT, Device::Cpu).unwrap().to_vec_f32().unwrap();
        check::<T>(&format!("timestep_embedding dim {dim} {p:?}"), &download(s, &out), &want);
    }
}

/// The softmax tests' (rows, c, causal mask): odd rows (scalar path), multiples of 8 (vector
/// path), a long row, and stacks of causal score matrices starting at query 0 and at a later
/// chunk.
const SOFTMAX_CASES: [(usize, usize, Option<CausalMask>); 7] = [
    (7, 77, None),
    (15, 1000, None),
    (2, 16384, None),
    (3, 1, None),
    (3 * 13, 13, Some(CausalMask { rows_per_matrix: 13, offset: 0 })),
    (2 * 5, 24, Some(CausalMask { rows_per_matrix: 5, offset: 19 })),
    (2 * 6, 40, Some(CausalMask { rows_per_matrix: 6, offset: 30 })),
];

/// `x [rows, c]` with the columns `causal` masks set to -inf (the CPU reference's input).
fn causal_masked(x: &[f32], c: usize, causal: Option<CausalMask>) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let (r, col) = (i / c, i % c);
            match causal {
                Some(m) if col > r % m.rows_per_matrix + m.offset => f32::NEG_INFINITY,
                _ => v,
            }
        })
        .collect()
}

/// The row softmax, plain and under the attention fallback's causal mask (reference: the CPU
/// softmax of the rows with the masked columns set to -inf), out of place and in place.
fn softmax<T: Elem>(g: &Gpu) {
    let s = &g.stream;
    let f = g.modules.norm(NormKernel { op: NormOp::Softmax, dtype: T::DTYPE }).unwrap();
    for (rows, c, causal) in SOFTMAX_CASES {
        let x = random::<T>(rows * c, 15, (-8.0, 8.0));
        let want =
            cpu::<T>(&causal_masked(&x, c, causal), &[rows, c]).softmax().unwrap().to_vec_f32().unwrap();
        let dims = SoftmaxDims { rows, c, causal };
        let xd = upload::<T>(s, &x);
        let mut y = poisoned::<T>(s, rows * c);
        norm::launch_softmax(s, &f, &xd.as_view(), &mut y.as_view_mut(), dims).unwrap();
        check::<T>(&format!("softmax {dims:?}"), &download(s, &y), &want);
        let mut inplace = upload::<T>(s, &x);
        norm::launch_softmax_in_place(s, &f, &mut inplace.as_view_mut(), dims).unwrap();
        check::<T>(&format!("softmax in place {dims:?}"), &download(s, &inplace), &want);
    }
}

/// The softmax from f32 rows to `T` (the unfused attention's scores to probabilities) against
/// the CPU backend's f32 softmax: without remainders, `y` is that rounded once to `T`; with them,
/// `y` is the same and `y + y_lo` is the f32 softmax to about `u^2`. Inputs are f32 values that
/// `T` cannot hold, half of the cases around 100 with a spread of a few units (attention scores
/// with a large common offset), so a kernel that rounded its input to `T` first would fail.
fn softmax_from_f32<T: Elem>(g: &Gpu) {
    let s = &g.stream;
    let f = g.modules.norm(NormKernel { op: NormOp::SoftmaxFromF32, dtype: T::DTYPE }).unwrap();
    for (i, (rows, c, causal)) in SOFTMAX_CASES.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(17 + i as u64);
        let lo = if i % 2 == 0 { -8.0 } else { 96.0 };
        let x: Vec<f32> = (0..rows * c).map(|_| rng.random_range(lo..lo + 8.0)).collect();
        let want: Vec<f32> =
            Tensor::from_f32(causal_masked(&x, c, causal), &[rows, c], DType::F32, Device::Cpu)
                .unwrap()
                .softmax()
                .unwrap()
                .to_vec_f32()
                .unwrap();
        let rounded: Vec<f32> = want.iter().map(|&p| T::from_f32(p).to_f32()).collect();
        let dims = SoftmaxDims { rows, c, causal };
        let what = format!("softmax from f32 {dims:?}, inputs in [{lo}, {})", lo + 8.0);
        let xd = s.clone_htod(&x).unwrap();
        let mut y = poisoned::<T>(s, rows * c);
        norm::launch_softmax_from_f32(s, &f, &xd.as_view(), &mut y.as_view_mut(), None, dims).unwrap();
        check::<T>(&what, &download(s, &y), &rounded);

        let (mut y, mut y_lo) = (poisoned::<T>(s, rows * c), poisoned::<T>(s, rows * c));
        let mut lo_view = y_lo.as_view_mut();
        norm::launch_softmax_from_f32(s, &f, &xd.as_view(), &mut y.as_view_mut(), Some(&mut lo_view), dims)
            .unwrap();
        let hi = download(s, &y);
        check::<T>(&format!("{what}, y of y + y_lo"), &hi, &rounded);
        let sum: Vec<f32> = hi.iter().zip(download(s, &y_lo)).map(|(h, l)| h + l).collect();
        // Both sides f32 softmaxes (a few f32 ulps apart), the remainder rounded to T: u^2
        // relative, and f16's subnormal spacing (6e-8) absolute.
        let u = T::TOL.1 / 2.0;
        let bad: Vec<String> = (0..sum.len())
            .filter(|&k| !((sum[k] - want[k]).abs() <= 1e-7 + (u * u + 1e-6) * want[k].abs()))
            .take(8)
            .map(|k| format!("[{k}] gpu {:e} cpu {:e}", sum[k], want[k]))
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: y + y_lo differs from the f32 softmax ({:?}): {}",
            T::DTYPE,
            bad.join(", ")
        );
    }
}

/// Permutations of bf16 (2-byte) and f32 (4-byte) elements, gather and tiled, against the CPU
/// backend's permute: bit-exact.
fn permutes(g: &Gpu) {
    let s = &g.stream;
    let cases: [(&[usize], &[usize]); 6] = [
        (&[2, 9, 11, 40], &[0, 3, 1, 2]),
        (&[2, 33, 35], &[2, 1, 0]),
        (&[3, 77, 5, 16], &[0, 2, 1, 3]),
        (&[1, 3, 17, 19], &[0, 2, 3, 1]),
        (&[2, 1, 3, 4, 5, 6], &[5, 4, 3, 2, 1, 0]),
        (&[1000], &[0]),
    ];
    for (dims, perm) in cases {
        let n: usize = dims.iter().product();
        let plan = ew::PermutePlan::new(dims, perm).unwrap();
        let x = random::<bf16>(n, 16, (-3.0, 3.0));
        let what = format!("permute {dims:?} by {perm:?} (tiled {})", plan.tiled());
        // 2-byte elements.
        let want = cpu::<bf16>(&x, dims).permute(perm).unwrap().to_vec_f32().unwrap();
        let f = g.modules.elementwise(ew::permute_kernel(&plan, ew::PermuteWidth::B16)).unwrap();
        let mut y = poisoned::<bf16>(s, n);
        ew::launch_permute(s, &f, &upload::<bf16>(s, &x).as_view(), &mut y.as_view_mut(), &plan).unwrap();
        assert_eq!(format!("{:?}", download(s, &y)), format!("{want:?}"), "{what} bf16");
        // 4-byte elements.
        let xf = s.clone_htod(&x).unwrap();
        let f = g.modules.elementwise(ew::permute_kernel(&plan, ew::PermuteWidth::B32)).unwrap();
        let mut yf = s.clone_htod(&vec![f32::NAN; n]).unwrap();
        ew::launch_permute(s, &f, &xf.as_view(), &mut yf.as_view_mut(), &plan).unwrap();
        assert_eq!(format!("{:?}", s.clone_dtoh(&yf).unwrap()), format!("{want:?}"), "{what} f32");
    }
}

#[test]
fn softmax_and_permute_kernels_match_the_cpu_backend() {
    let Some(g) = gpu() else { return };
    softmax::<bf16>(g);
    softmax::<f16>(g);
    softmax_from_f32::<bf16>(g);
    softmax_from_f32::<f16>(g);
    permutes(g);
}

#[test]
fn norm_kernels_match_the_cpu_backend() {
    let Some(g) = gpu() else { return };
    norms::<bf16>(g);
    norms::<f16>(g);
}

#[test]
fn elementwise_kernels_match_the_cpu_backend() {
    let Some(g) = gpu() else { return };
    unary_and_geglu::<bf16>(g);
    unary_and_geglu::<f16>(g);
    binary::<bf16>(g);
    binary::<f16>(g);
    layout::<bf16>(g);
    layout::<f16>(g);
    timesteps::<bf16>(g);
    timesteps::<f16>(g);
}

#[test]
fn casts_round_like_the_cpu_backend() {
    let Some(g) = gpu() else { return };
    let s = &g.stream;
    let n = 10_007;
    let x: Vec<f32> = random::<bf16>(n, 14, (-70_000.0, 70_000.0)).iter().map(|v| v * 1.0001).collect();
    let xf = s.clone_htod(&x).unwrap();
    let cast = |from, to| g.modules.elementwise(ElementwiseKernel::Cast { from, to }).unwrap();
    let t = Tensor::from_f32(x.clone(), &[n], DType::F32, Device::Cpu).unwrap();
    let want_b = t.to_dtype(DType::BF16).unwrap().to_vec_f32().unwrap();
    let want_h = t.to_dtype(DType::F16).unwrap().to_vec_f32().unwrap();

    let mut b = poisoned::<bf16>(s, n);
    ew::launch_cast(s, &cast(CastType::F32, CastType::BF16), &xf.as_view(), &mut b.as_view_mut()).unwrap();
    let got_b = download(s, &b);
    assert_eq!(
        got_b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want_b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "f32 -> bf16"
    );
    let mut h = poisoned::<f16>(s, n);
    ew::launch_cast(s, &cast(CastType::F32, CastType::F16), &xf.as_view(), &mut h.as_view_mut()).unwrap();
    let got_h = download(s, &h);
    assert_eq!(format!("{got_h:?}"), format!("{want_h:?}"), "f32 -> f16 (inf past 65504)");

    // Back to f32 is exact; bf16 <-> f16 goes through f32 like the CPU backend's to_dtype.
    let mut back = s.alloc_zeros::<f32>(n).unwrap();
    ew::launch_cast(s, &cast(CastType::BF16, CastType::F32), &b.as_view(), &mut back.as_view_mut()).unwrap();
    assert_eq!(format!("{:?}", s.clone_dtoh(&back).unwrap()), format!("{got_b:?}"), "bf16 -> f32");
    ew::launch_cast(s, &cast(CastType::F16, CastType::F32), &h.as_view(), &mut back.as_view_mut()).unwrap();
    assert_eq!(format!("{:?}", s.clone_dtoh(&back).unwrap()), format!("{got_h:?}"), "f16 -> f32");
    let mut h2 = poisoned::<f16>(s, n);
    ew::launch_cast(s, &cast(CastType::BF16, CastType::F16), &b.as_view(), &mut h2.as_view_mut()).unwrap();
    let want = Tensor::from_f32(got_b.clone(), &[n], DType::BF16, Device::Cpu)
        .unwrap()
        .to_dtype(DType::F16)
        .unwrap();
    assert_eq!(format!("{:?}", download(s, &h2)), format!("{:?}", want.to_vec_f32().unwrap()), "bf16 -> f16");
    let mut b2 = poisoned::<bf16>(s, n);
    ew::launch_cast(s, &cast(CastType::F16, CastType::BF16), &h.as_view(), &mut b2.as_view_mut()).unwrap();
    let want = Tensor::from_f32(got_h.clone(), &[n], DType::F16, Device::Cpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    assert_eq!(format!("{:?}", download(s, &b2)), format!("{:?}", want.to_vec_f32().unwrap()), "f16 -> bf16");
}
