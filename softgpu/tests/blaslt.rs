//! cuBLASLt through its exported C functions, against an f64 reference written from the
//! documented column-major definition: element (i, j) of batch b of a matrix with leading
//! dimension `ld` and batch stride `s` is element `i + j * ld + b * s` from its pointer, and
//! `D = act(alpha * op(A) op(B) + beta * C + bias[i])`.

use std::ffi::{CStr, c_int, c_void};
use std::ptr::{null, null_mut};

use kiln_softgpu::blaslt::desc::{
    Handle, MatmulDesc, MatrixLayout, Preference, layout_attr, matmul_attr, pref_attr,
};
use kiln_softgpu::blaslt::types::{Dtype, data_type, epilogue};
use kiln_softgpu::blaslt::*;
use kiln_softgpu::memory::DeviceMemory;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BF16: u32 = data_type::R_16BF;
const F16: u32 = data_type::R_16F;
const F32: u32 = data_type::R_32F;
const COMPUTE_32F: u32 = 68;

fn mem() -> &'static DeviceMemory {
    &kiln_softgpu::device::device().unwrap().memory
}

fn dtype(raw: u32) -> Dtype {
    Dtype::from_raw(raw).unwrap()
}

/// Copies `values` (rounded to `t`) to a fresh allocation; returns it and the stored values.
fn upload(t: u32, values: &[f32]) -> (u64, Vec<f32>) {
    let dt = dtype(t);
    let mut bytes = vec![0u8; values.len() * dt.size()];
    dt.encode(values, &mut bytes);
    let addr = mem().alloc(bytes.len() as u64).unwrap();
    mem().write(addr, &bytes).unwrap();
    let mut stored = vec![0f32; values.len()];
    dt.decode(&bytes, &mut stored);
    (addr, stored)
}

fn download(t: u32, addr: u64, len: usize) -> Vec<f32> {
    let dt = dtype(t);
    let mut bytes = vec![0u8; len * dt.size()];
    mem().read(addr, &mut bytes).unwrap();
    let mut out = vec![0f32; len];
    dt.decode(&bytes, &mut out);
    out
}

/// Random values in ±[0.25, 1): never zero, so a skipped term always shows.
fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(0.25f32..1.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 }).collect()
}

/// One matrix's layout in a test.
#[derive(Clone, Copy, Debug)]
struct Mat {
    rows: u64,
    cols: u64,
    ld: i64,
    stride: i64,
}

impl Mat {
    fn packed(rows: u64, cols: u64) -> Mat {
        Mat { rows, cols, ld: rows as i64, stride: (rows * cols) as i64 }
    }

    fn at(&self, i: u64, j: u64, b: u64) -> usize {
        (i as i64 + j as i64 * self.ld + b as i64 * self.stride) as usize
    }

    /// Elements a buffer needs to hold every batch.
    fn len(&self, batch: u64) -> usize {
        self.at(self.rows - 1, self.cols - 1, batch - 1).max(self.at(self.rows - 1, self.cols - 1, 0)) + 1
    }
}

#[derive(Clone, Debug)]
struct Case {
    ab: u32,
    cd: u32,
    m: u64,
    n: u64,
    k: u64,
    ta: bool,
    tb: bool,
    a: Mat,
    b: Mat,
    c: Mat,
    d: Mat,
    batch: u64,
    alpha: f32,
    beta: f32,
    in_place: bool,
    epilogue: u32,
    bias_stride: i64,
}

impl Case {
    fn new(ab: u32, cd: u32, (m, n, k): (u64, u64, u64), ta: bool, tb: bool) -> Case {
        let a = if ta { Mat::packed(k, m) } else { Mat::packed(m, k) };
        let b = if tb { Mat::packed(n, k) } else { Mat::packed(k, n) };
        Case {
            ab,
            cd,
            m,
            n,
            k,
            ta,
            tb,
            a,
            b,
            c: Mat::packed(m, n),
            d: Mat::packed(m, n),
            batch: 1,
            alpha: 1.0,
            beta: 0.0,
            in_place: false,
            epilogue: epilogue::DEFAULT,
            bias_stride: 0,
        }
    }

    fn has_bias(&self) -> bool {
        matches!(self.epilogue, epilogue::BIAS | epilogue::RELU_BIAS | epilogue::GELU_BIAS)
    }
}

/// The cuBLASLt objects of one call, destroyed on drop.
struct Objects {
    handle: *mut Handle,
    desc: *mut MatmulDesc,
    layouts: [*mut MatrixLayout; 4],
    pref: *mut Preference,
}

fn ok(s: Status) {
    assert_eq!(s, Status::Success);
}

fn set_desc<T: Copy>(desc: *mut MatmulDesc, attr: u32, value: T) -> Status {
    unsafe { cublasLtMatmulDescSetAttribute(desc, attr, &value as *const T as *const c_void, size_of::<T>()) }
}

fn set_layout<T: Copy>(l: *mut MatrixLayout, attr: u32, value: T) -> Status {
    unsafe { cublasLtMatrixLayoutSetAttribute(l, attr, &value as *const T as *const c_void, size_of::<T>()) }
}

fn layout(t: u32, m: &Mat, batch: u64) -> *mut MatrixLayout {
    let mut l = null_mut();
    ok(unsafe { cublasLtMatrixLayoutCreate(&mut l, t, m.rows, m.cols, m.ld) });
    if batch > 1 {
        ok(set_layout(l, layout_attr::BATCH_COUNT, batch as i32));
        ok(set_layout(l, layout_attr::STRIDED_BATCH_OFFSET, m.stride));
    }
    l
}

impl Objects {
    fn new(case: &Case, bias: u64) -> Objects {
        let mut handle = null_mut();
        ok(unsafe { cublasLtCreate(&mut handle) });
        let mut desc = null_mut();
        ok(unsafe { cublasLtMatmulDescCreate(&mut desc, COMPUTE_32F, F32) });
        ok(set_desc(desc, matmul_attr::TRANSA, case.ta as i32));
        ok(set_desc(desc, matmul_attr::TRANSB, case.tb as i32));
        ok(set_desc(desc, matmul_attr::TRANSC, 0i32));
        ok(set_desc(desc, matmul_attr::EPILOGUE, case.epilogue));
        if case.has_bias() {
            ok(set_desc(desc, matmul_attr::BIAS_POINTER, bias));
            ok(set_desc(desc, matmul_attr::BIAS_BATCH_STRIDE, case.bias_stride));
        }
        let layouts = [
            layout(case.ab, &case.a, case.batch),
            layout(case.ab, &case.b, case.batch),
            layout(case.cd, &case.c, case.batch),
            layout(case.cd, &case.d, case.batch),
        ];
        let mut pref = null_mut();
        ok(unsafe { cublasLtMatmulPreferenceCreate(&mut pref) });
        let ws = 1u64 << 22;
        ok(unsafe {
            cublasLtMatmulPreferenceSetAttribute(
                pref,
                pref_attr::MAX_WORKSPACE_BYTES,
                &ws as *const u64 as _,
                8,
            )
        });
        Objects { handle, desc, layouts, pref }
    }

    fn heuristic(&self) -> (Status, c_int, HeuristicResult) {
        let mut result = std::mem::MaybeUninit::<HeuristicResult>::zeroed();
        let mut count = -1;
        let [a, b, c, d] = self.layouts;
        let s = unsafe {
            cublasLtMatmulAlgoGetHeuristic(
                self.handle,
                self.desc,
                a,
                b,
                c,
                d,
                self.pref,
                1,
                result.as_mut_ptr(),
                &mut count,
            )
        };
        (s, count, unsafe { result.assume_init() })
    }

    fn matmul(&self, alpha: f32, beta: f32, p: [u64; 4], algo: *const MatmulAlgo) -> Status {
        let [a, b, c, d] = self.layouts;
        unsafe {
            cublasLtMatmul(
                self.handle,
                self.desc,
                &alpha as *const f32 as _,
                p[0] as _,
                a,
                p[1] as _,
                b,
                &beta as *const f32 as _,
                p[2] as _,
                c,
                p[3] as _,
                d,
                algo,
                null_mut(),
                0,
                null_mut(),
            )
        }
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        unsafe {
            for l in self.layouts {
                ok(cublasLtMatrixLayoutDestroy(l));
            }
            ok(cublasLtMatmulPreferenceDestroy(self.pref));
            ok(cublasLtMatmulDescDestroy(self.desc));
            ok(cublasLtDestroy(self.handle));
        }
    }
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// Relative tolerance (of the sum of the terms' magnitudes) for D's type.
fn tolerance(cd: u32) -> f64 {
    match cd {
        BF16 => 2f64.powi(-8),
        F16 => 2f64.powi(-11) + 1e-5,
        _ => 1e-5,
    }
}

const SENTINEL: f32 = 3.0;

/// Runs `case` through the heuristic and the matmul and checks D element by element, and that
/// D's buffer is untouched outside D's elements.
fn check(case: &Case, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (a, ha) = upload(case.ab, &random(&mut rng, case.a.len(case.batch)));
    let (b, hb) = upload(case.ab, &random(&mut rng, case.b.len(case.batch)));
    let d_len = case.d.len(case.batch);
    let (c, hc) = if case.in_place || case.beta != 0.0 {
        upload(case.cd, &random(&mut rng, case.c.len(case.batch).max(d_len)))
    } else {
        // Never written: the sanitizer would report a read of it.
        (mem().alloc((case.c.len(case.batch) * dtype(case.cd).size()) as u64).unwrap(), Vec::new())
    };
    let d = if case.in_place { c } else { upload(case.cd, &vec![SENTINEL; d_len]).0 };
    let bias_len = case.m as usize + (case.batch as usize - 1) * case.bias_stride as usize;
    let (bias, hbias) = upload(case.cd, &random(&mut rng, bias_len));

    let o = Objects::new(case, bias);
    let (s, count, result) = o.heuristic();
    assert_eq!((s, count, result.state), (Status::Success, 1, Status::Success), "{case:?}");
    ok(o.matmul(case.alpha, case.beta, [a, b, c, d], &result.algo));

    let got = download(case.cd, d, d_len);
    let mut is_d = vec![false; d_len];
    let tol = tolerance(case.cd) * if case.epilogue == epilogue::GELU_BIAS { 1.2 } else { 1.0 };
    for bi in 0..case.batch {
        for j in 0..case.n {
            for i in 0..case.m {
                let (mut sum, mut mag) = (0f64, 0f64);
                for p in 0..case.k {
                    let x = if case.ta { ha[case.a.at(p, i, bi)] } else { ha[case.a.at(i, p, bi)] } as f64;
                    let y = if case.tb { hb[case.b.at(j, p, bi)] } else { hb[case.b.at(p, j, bi)] } as f64;
                    sum += x * y;
                    mag += (x * y).abs();
                }
                let mut v = case.alpha as f64 * sum;
                mag *= (case.alpha as f64).abs();
                if case.beta != 0.0 {
                    let cv = case.beta as f64 * hc[case.c.at(i, j, bi)] as f64;
                    v += cv;
                    mag += cv.abs();
                }
                if case.has_bias() {
                    let bv = hbias[i as usize + (bi as i64 * case.bias_stride) as usize] as f64;
                    v += bv;
                    mag += bv.abs();
                }
                let want = match case.epilogue {
                    epilogue::RELU | epilogue::RELU_BIAS => v.max(0.0),
                    epilogue::GELU | epilogue::GELU_BIAS => gelu(v),
                    _ => v,
                };
                let at = case.d.at(i, j, bi);
                is_d[at] = true;
                let err = (got[at] as f64 - want).abs();
                assert!(
                    err <= tol * mag,
                    "{case:?}\nD({i}, {j}) batch {bi}: got {}, want {want} (error {err}, allowed {})",
                    got[at],
                    tol * mag
                );
            }
        }
    }
    if !case.in_place {
        for (at, v) in got.iter().enumerate() {
            assert!(is_d[at] || *v == SENTINEL, "{case:?}: element {at} outside D was written ({v})");
        }
    }
}

#[test]
fn every_type_combination_and_transpose() {
    let mut seed = 0;
    for (ab, cd) in [(BF16, BF16), (F16, F16), (F32, F32), (BF16, F32), (F16, F32)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for shape in [(1, 1, 1), (7, 33, 5), (33, 7, 64), (1, 9, 33)] {
                seed += 1;
                check(&Case::new(ab, cd, shape, ta, tb), seed);
            }
        }
    }
}

#[test]
fn leading_dimensions_larger_than_rows() {
    for (ta, tb) in [(false, false), (true, true), (true, false)] {
        let mut case = Case::new(BF16, BF16, (7, 5, 33), ta, tb);
        case.a.ld += 3;
        case.b.ld += 5;
        case.c.ld += 2;
        case.d.ld += 2;
        case.alpha = 0.75;
        check(&case, 100);
    }
}

#[test]
fn beta_with_separate_c_and_in_place() {
    for (ab, cd) in [(BF16, BF16), (F16, F32), (F32, F32)] {
        let mut case = Case::new(ab, cd, (33, 7, 16), true, false);
        case.alpha = 1.5;
        case.beta = -0.5;
        check(&case, 200);
        case.in_place = true;
        check(&case, 201);
    }
}

#[test]
fn beta_zero_never_reads_c() {
    // C is a never-written allocation (see `check`), and then the output buffer itself
    // before it was ever written, as cudarc passes it, and then a pointer to nothing.
    check(&Case::new(BF16, BF16, (9, 4, 8), false, true), 300);
    let case = Case::new(F16, F16, (9, 4, 8), false, false);
    let mut rng = StdRng::seed_from_u64(301);
    let (a, _) = upload(F16, &random(&mut rng, 9 * 8));
    let (b, _) = upload(F16, &random(&mut rng, 8 * 4));
    let d = mem().alloc(9 * 4 * 2).unwrap();
    let o = Objects::new(&case, 0);
    ok(o.matmul(1.0, 0.0, [a, b, d, d], null()));
    ok(o.matmul(1.0, 0.0, [a, b, 0x10, d], null()));
}

#[test]
fn bias_and_activation_epilogues() {
    for (i, e) in [epilogue::BIAS, epilogue::RELU_BIAS, epilogue::GELU_BIAS, epilogue::RELU, epilogue::GELU]
        .into_iter()
        .enumerate()
    {
        for (ab, cd) in [(BF16, BF16), (F32, F32)] {
            let mut case = Case::new(ab, cd, (17, 6, 12), true, false);
            case.epilogue = e;
            case.beta = 0.25;
            check(&case, 400 + i as u64);
        }
    }
}

#[test]
fn batched_bias_broadcast_and_strided() {
    let mut case = Case::new(BF16, BF16, (5, 3, 4), false, false);
    case.batch = 3;
    case.epilogue = epilogue::BIAS;
    check(&case, 500);
    case.bias_stride = 5;
    check(&case, 501);
}

#[test]
fn interleaved_heads() {
    // Attention on row-major [seq, heads * 64] tensors, which cuBLAS sees as column-major
    // (heads * 64) x seq with head h's 64 rows at offset h * 64: scores_h = K_h^T Q_h, then
    // out_h = V_h P_h written back interleaved.
    let (heads, dim, seq) = (3u64, 64u64, 10u64);
    let inter = |cols| Mat { rows: dim, cols, ld: (heads * dim) as i64, stride: dim as i64 };
    let mut scores = Case::new(BF16, BF16, (seq, seq, dim), true, false);
    scores.a = inter(seq);
    scores.b = inter(seq);
    scores.batch = heads;
    scores.alpha = 0.125;
    check(&scores, 600);

    let mut out = Case::new(F16, F16, (dim, seq, seq), false, false);
    out.a = inter(seq);
    out.b = Mat::packed(seq, seq);
    out.c = inter(seq);
    out.d = inter(seq);
    out.batch = heads;
    check(&out, 601);
    out.beta = 1.0;
    out.in_place = true;
    check(&out, 602);
}

#[test]
fn stride_zero_broadcasts_an_operand() {
    let mut case = Case::new(F32, F32, (6, 5, 7), false, true);
    case.batch = 4;
    case.a.stride = 0;
    check(&case, 700);
    let mut case = Case::new(BF16, F32, (6, 5, 7), true, false);
    case.batch = 3;
    case.b.stride = 0;
    case.beta = 2.0;
    case.c.stride = 0; // one C for every batch, D still per batch
    check(&case, 701);
}

#[test]
fn a_larger_product() {
    let mut case = Case::new(BF16, BF16, (96, 80, 200), true, false);
    case.batch = 2;
    check(&case, 800);
}

#[test]
fn device_pointer_mode_scalars() {
    let case = Case::new(F32, F32, (3, 2, 4), false, false);
    let mut rng = StdRng::seed_from_u64(900);
    let (a, ha) = upload(F32, &random(&mut rng, 12));
    let (b, hb) = upload(F32, &random(&mut rng, 8));
    let (c, hc) = upload(F32, &random(&mut rng, 6));
    let (d, _) = upload(F32, &[0.0; 6]);
    let (scalars, _) = upload(F32, &[2.0, 0.5]);
    let o = Objects::new(&case, 0);
    ok(set_desc(o.desc, matmul_attr::POINTER_MODE, 1i32));
    let [la, lb, lc, ld] = o.layouts;
    let s = unsafe {
        cublasLtMatmul(
            o.handle,
            o.desc,
            scalars as _,
            a as _,
            la,
            b as _,
            lb,
            (scalars + 4) as _,
            c as _,
            lc,
            d as _,
            ld,
            null(),
            null_mut(),
            0,
            null_mut(),
        )
    };
    ok(s);
    let got = download(F32, d, 6);
    for j in 0..2 {
        for i in 0..3 {
            let sum: f32 = (0..4).map(|p| ha[i + p * 3] * hb[p + j * 4]).sum();
            let want = 2.0 * sum + 0.5 * hc[i + j * 3];
            assert!((got[i + j * 3] - want).abs() < 1e-5, "{} vs {want}", got[i + j * 3]);
        }
    }
}

#[test]
fn bad_device_pointers_fail_execution_and_write_nothing() {
    let case = Case::new(BF16, BF16, (8, 4, 6), false, false);
    let mut rng = StdRng::seed_from_u64(1000);
    let (a, _) = upload(BF16, &random(&mut rng, 48));
    let (b, _) = upload(BF16, &random(&mut rng, 24));
    let (d, _) = upload(BF16, &[SENTINEL; 32]);
    let o = Objects::new(&case, 0);
    // Outside every allocation, then running past A's end, then freed.
    assert_eq!(o.matmul(1.0, 0.0, [0x1234_0000, b, d, d], null()), Status::ExecutionFailed);
    assert_eq!(o.matmul(1.0, 0.0, [a + 4, b, d, d], null()), Status::ExecutionFailed);
    let (freed, _) = upload(BF16, &random(&mut rng, 24));
    mem().free(freed).unwrap();
    assert_eq!(o.matmul(1.0, 0.0, [a, freed, d, d], null()), Status::ExecutionFailed);
    // Misaligned for 2-byte elements.
    assert_eq!(o.matmul(1.0, 0.0, [a, b, d + 1, d + 1], null()), Status::ExecutionFailed);
    assert!(download(BF16, d, 32).iter().all(|v| *v == SENTINEL));
    // The bias pointer is checked too.
    let mut with_bias = case.clone();
    with_bias.epilogue = epilogue::BIAS;
    let o = Objects::new(&with_bias, a + 48 * 2 - 4);
    assert_eq!(o.matmul(1.0, 0.0, [a, b, d, d], null()), Status::ExecutionFailed);
}

#[test]
fn never_written_inputs_are_reported() {
    let case = Case::new(F32, F32, (4, 4, 4), false, false);
    let a = mem().alloc(64).unwrap();
    let (b, _) = upload(F32, &[1.0; 16]);
    let (d, _) = upload(F32, &[0.0; 16]);
    let o = Objects::new(&case, 0);
    assert_eq!(o.matmul(1.0, 0.0, [a, b, d, d], null()), Status::ExecutionFailed);
    // With beta != 0, C is read and must have been written.
    let (a, _) = upload(F32, &[1.0; 16]);
    let c = mem().alloc(64).unwrap();
    assert_eq!(o.matmul(1.0, 1.0, [a, b, c, d], null()), Status::ExecutionFailed);
    ok(o.matmul(1.0, 0.0, [a, b, c, d], null()));
}

/// The heuristic's answer for `case` after `tweak`, and the matmul's.
fn refused(case: &Case, tweak: impl Fn(&Objects)) -> (Status, c_int, Status) {
    let o = Objects::new(case, 0);
    tweak(&o);
    let (s, count, _) = o.heuristic();
    let (a, _) = upload(F32, &[1.0; 64]);
    (s, count, o.matmul(1.0, 0.0, [a, a, a, a], null()))
}

#[test]
fn unsupported_and_inconsistent_problems_are_refused() {
    let case = Case::new(F16, F16, (4, 4, 4), false, false);
    let nope = (Status::NotSupported, 0, Status::NotSupported);
    let invalid = (Status::InvalidValue, 0, Status::InvalidValue);
    // f16 inputs into bf16 is not in cuBLASLt's type table.
    assert_eq!(refused(&Case::new(F16, BF16, (4, 4, 4), false, false), |_| ()), nope);
    assert_eq!(refused(&case, |o| ok(set_desc(o.desc, matmul_attr::TRANSC, 1i32))), nope);
    assert_eq!(refused(&case, |o| ok(set_desc(o.desc, matmul_attr::EPILOGUE, 136u32))), nope); // DRELU
    assert_eq!(refused(&case, |o| ok(set_desc(o.desc, matmul_attr::COMPUTE_TYPE, 64u32))), nope); // 16F
    assert_eq!(refused(&case, |o| ok(set_layout(o.layouts[0], layout_attr::ORDER, 1i32))), nope); // row
    assert_eq!(refused(&case, |o| ok(set_layout(o.layouts[1], layout_attr::TYPE, 3u32))), nope); // i8
    assert_eq!(refused(&case, |o| ok(set_layout(o.layouts[0], layout_attr::COLS, 5u64))), invalid);
    assert_eq!(refused(&case, |o| ok(set_layout(o.layouts[2], layout_attr::LD, 3i64))), invalid);
    assert_eq!(refused(&case, |o| ok(set_layout(o.layouts[1], layout_attr::BATCH_COUNT, 2i32))), invalid);
}

#[test]
fn attribute_errors() {
    let case = Case::new(BF16, BF16, (2, 2, 2), false, false);
    let o = Objects::new(&case, 0);
    let v = 1i32;
    let pv = &v as *const i32 as *const c_void;
    unsafe {
        // Unknown ids (9 and 16 are holes in the matmul enum), wrong sizes, NULL buffers.
        assert_eq!(cublasLtMatmulDescSetAttribute(o.desc, 9, pv, 4), Status::InvalidValue);
        assert_eq!(cublasLtMatmulDescSetAttribute(o.desc, 1000, pv, 4), Status::InvalidValue);
        assert_eq!(cublasLtMatmulDescSetAttribute(o.desc, matmul_attr::TRANSA, pv, 8), Status::InvalidValue);
        assert_eq!(
            cublasLtMatmulDescSetAttribute(o.desc, matmul_attr::BIAS_POINTER, pv, 4),
            Status::InvalidValue
        );
        assert_eq!(
            cublasLtMatmulDescSetAttribute(o.desc, matmul_attr::TRANSA, null(), 4),
            Status::InvalidValue
        );
        assert_eq!(cublasLtMatrixLayoutSetAttribute(o.layouts[0], 8, pv, 4), Status::InvalidValue);
        assert_eq!(
            cublasLtMatrixLayoutSetAttribute(o.layouts[0], layout_attr::ROWS, pv, 4),
            Status::InvalidValue
        );
        assert_eq!(cublasLtMatmulPreferenceSetAttribute(o.pref, 2, pv, 4), Status::InvalidValue);
        assert_eq!(
            cublasLtMatmulPreferenceSetAttribute(o.pref, pref_attr::MAX_WORKSPACE_BYTES, pv, 4),
            Status::InvalidValue
        );

        // Get: size query, value, wrong size.
        let mut written = 0usize;
        ok(cublasLtMatmulDescGetAttribute(o.desc, matmul_attr::EPILOGUE, null_mut(), 0, &mut written));
        assert_eq!(written, 4);
        assert_eq!(
            cublasLtMatmulDescGetAttribute(o.desc, matmul_attr::EPILOGUE, null_mut(), 0, null_mut()),
            Status::InvalidValue
        );
        let mut e = 0u32;
        ok(cublasLtMatmulDescGetAttribute(
            o.desc,
            matmul_attr::EPILOGUE,
            &mut e as *mut u32 as _,
            4,
            &mut written,
        ));
        assert_eq!(e, epilogue::DEFAULT);
        let mut big = 0u64;
        assert_eq!(
            cublasLtMatmulDescGetAttribute(
                o.desc,
                matmul_attr::EPILOGUE,
                &mut big as *mut u64 as _,
                8,
                null_mut()
            ),
            Status::InvalidValue
        );
        ok(set_layout(o.layouts[0], layout_attr::STRIDED_BATCH_OFFSET, 77i64));
        ok(cublasLtMatrixLayoutGetAttribute(
            o.layouts[0],
            layout_attr::STRIDED_BATCH_OFFSET,
            &mut big as *mut u64 as _,
            8,
            &mut written,
        ));
        assert_eq!((big, written), (77, 8));
        let mut align = 0u32;
        ok(cublasLtMatmulPreferenceGetAttribute(
            o.pref,
            pref_attr::MIN_ALIGNMENT_A_BYTES,
            &mut align as *mut u32 as _,
            4,
            null_mut(),
        ));
        assert_eq!(align, 256);
        ok(cublasLtMatmulPreferenceSetAttribute(
            o.pref,
            pref_attr::MIN_ALIGNMENT_A_BYTES,
            &2u32 as *const u32 as _,
            4,
        ));
        ok(cublasLtMatmulPreferenceGetAttribute(
            o.pref,
            pref_attr::MIN_ALIGNMENT_A_BYTES,
            &mut align as *mut u32 as _,
            4,
            null_mut(),
        ));
        assert_eq!(align, 2);

        // NULL and mistyped objects.
        assert_eq!(
            cublasLtMatmulDescSetAttribute(null_mut(), matmul_attr::TRANSA, pv, 4),
            Status::InvalidValue
        );
        assert_eq!(
            cublasLtMatmulDescSetAttribute(o.layouts[0] as _, matmul_attr::TRANSA, pv, 4),
            Status::InvalidValue
        );
        assert_eq!(cublasLtDestroy(null_mut()), Status::NotInitialized);
        assert_eq!(cublasLtCreate(null_mut()), Status::InvalidValue);
        ok(cublasLtMatrixLayoutDestroy(null_mut()));
        let [a, b, c, d] = o.layouts;
        let mut result = std::mem::MaybeUninit::<HeuristicResult>::zeroed();
        let mut count = 7;
        let mut h = |handle, desc, n| {
            cublasLtMatmulAlgoGetHeuristic(
                handle,
                desc,
                a,
                b,
                c,
                d,
                o.pref,
                n,
                result.as_mut_ptr(),
                &mut count,
            )
        };
        assert_eq!(h(null_mut(), o.desc, 1), Status::NotInitialized);
        assert_eq!(h(o.handle, null_mut(), 1), Status::InvalidValue);
        assert_eq!(h(o.handle, o.desc, 0), Status::InvalidValue);
        let one = 1.0f32;
        let s = cublasLtMatmul(
            null_mut(),
            o.desc,
            &one as *const f32 as _,
            null(),
            a,
            null(),
            b,
            &one as *const f32 as _,
            null(),
            c,
            null_mut(),
            d,
            null(),
            null_mut(),
            0,
            null_mut(),
        );
        assert_eq!(s, Status::NotInitialized);
    }
}

#[test]
fn in_place_needs_matching_layouts() {
    let mut case = Case::new(F32, F32, (3, 3, 3), false, false);
    case.d.ld = 4;
    let (x, _) = upload(F32, &[1.0; 16]);
    let o = Objects::new(&case, 0);
    assert_eq!(o.matmul(1.0, 1.0, [x, x, x, x], null()), Status::InvalidValue);
}

#[test]
fn version_status_names_and_logger() {
    assert_eq!(cublasLtGetVersion(), 120804);
    let name = unsafe { CStr::from_ptr(cublasLtGetStatusName(Status::NotSupported as u32)) };
    assert_eq!(name.to_str().unwrap(), "CUBLAS_STATUS_NOT_SUPPORTED");
    let text = unsafe { CStr::from_ptr(cublasLtGetStatusString(13)) };
    assert!(!text.to_bytes().is_empty());
    let mut major = 0;
    ok(unsafe { cublasLtGetProperty(0, &mut major) });
    assert_eq!(major, 12);

    let dir = std::env::temp_dir().join(format!("kiln-blaslt-log-{}", std::process::id()));
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    ok(unsafe { cublasLtLoggerOpenFile(path.as_ptr()) });
    ok(cublasLtLoggerSetLevel(2));
    assert_eq!(cublasLtLoggerSetLevel(6), Status::InvalidValue);
    check(&Case::new(F32, F32, (2, 2, 2), false, false), 1100);
    ok(cublasLtLoggerSetLevel(0));
    let log = std::fs::read_to_string(&dir).unwrap();
    let _ = std::fs::remove_file(&dir);
    assert!(log.contains("cublasLtMatmul"), "{log}");
}
