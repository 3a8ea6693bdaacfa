//! The CPU reference backend.
//!
//! One module per family of ops; each takes host storage plus the dimensions that
//! [`crate::ops`] has already validated and returns new host storage. Arithmetic widens every
//! dtype to f32 (`widen`), accumulates in f32 (f64 for group-norm statistics) and rounds the
//! result back to the operands' dtype (`round_to`); bf16 products on AMX read their bf16
//! operands as stored and accumulate in f32 the same way. Ops that only move data ([`layout`])
//! copy the stored elements as they are, which is exact for every dtype.
//!
//! Parallelism is rayon at one level: an op either splits its work into rayon tasks that call
//! `gemm` single-threaded, or calls `gemm` with `Parallelism::Rayon(0)` from the caller's thread,
//! never both.
//!
//! Results are batch-invariant: an image's (a row's) values never depend on what else shares the
//! op or on the thread count. GEMMs whose row count grows with the batch go through
//! `matmul::gemm_rows` (never below the row count where `gemm`'s path stops depending on it), attention blocks its queries per image, and
//! reductions add their partial sums in an order fixed per image, so a batched render equals
//! renders of one image bit for bit.
//!
//! - [`amx`]: bf16 products on Intel AMX tiles (detected at run time), which bf16 compute uses
//!   for linear layers, stride-1 convolutions and attention; f32 and f16 compute, and CPUs
//!   without AMX, take the f32 `gemm` paths below.
//! - [`fma`]: f32 products on an AVX-512 register tile with B packed once and A read in place,
//!   which f32 convolutions use on CPUs with AVX-512 F (`KILN_CPU_FMA=0` turns it off).
//! - [`matmul`]: the `gemm` wrapper, linear layers, batched matrix products.
//! - [`conv`]: 2-d convolution, NHWC activations and OHWI weights: an implicit GEMM on the
//!   [`fma`] tile, or `gemm` on shifted views of the padded input or on chunks of im2col.
//! - [`norm`]: group norm (optionally fused with SiLU) and layer norm.
//! - [`softmax`] and [`attention`]: row softmax and multi-head attention on query blocks.
//! - [`activation`]: GELU (erf form), GEGLU, SiLU.
//! - [`binary`]: broadcasting add and multiply, affine maps.
//! - [`layout`]: nearest upsampling, concatenation, permutation, narrowing.
//! - [`embedding`]: sinusoidal timestep embeddings.
//! - [`peak`]: the machine's measured f32 FMA peak, the ceiling benches report against.
//! - `math`: a vectorisable `exp` and sums shared by the ops above.

use std::borrow::Cow;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

use crate::{CpuStorage, DType};

pub mod activation;
pub mod amx;
pub mod attention;
pub mod binary;
pub mod conv;
pub mod embedding;
pub mod fma;
pub mod layout;
pub(crate) mod math;
pub mod matmul;
pub mod norm;
pub mod peak;
pub mod softmax;

/// Elements per rayon task in element-wise loops: large enough to amortise scheduling,
/// small enough to balance across cores and stay in L2.
pub(crate) const ELEMWISE_CHUNK: usize = 1 << 14;

/// The storage's elements as f32: borrowed for f32 storage, widened in parallel otherwise.
pub(crate) fn widen(s: &CpuStorage) -> Cow<'_, [f32]> {
    fn go<T: Sync>(v: &[T], conv: impl Fn(&[T], &mut [f32]) + Sync) -> Vec<f32> {
        let mut out = vec![0f32; v.len()];
        out.par_chunks_mut(ELEMWISE_CHUNK).zip(v.par_chunks(ELEMWISE_CHUNK)).for_each(|(o, i)| conv(i, o));
        out
    }
    match s {
        CpuStorage::F32(v) => Cow::Borrowed(v),
        CpuStorage::F16(v) => Cow::Owned(go(v, |i, o| i.convert_to_f32_slice(o))),
        CpuStorage::BF16(v) => Cow::Owned(go(v, |i, o| i.convert_to_f32_slice(o))),
    }
}

/// Stores f32 results as `dtype`, rounding to nearest even in parallel.
pub(crate) fn round_to(v: Vec<f32>, dtype: DType) -> CpuStorage {
    fn go<T: Send + Copy>(v: &[f32], zero: T, conv: impl Fn(&[f32], &mut [T]) + Sync) -> Vec<T> {
        let mut out = vec![zero; v.len()];
        out.par_chunks_mut(ELEMWISE_CHUNK).zip(v.par_chunks(ELEMWISE_CHUNK)).for_each(|(o, i)| conv(i, o));
        out
    }
    match dtype {
        DType::F32 => CpuStorage::F32(v),
        DType::F16 => CpuStorage::F16(go(&v, f16::ZERO, |i, o| o.convert_from_f32_slice(i))),
        DType::BF16 => CpuStorage::BF16(go(&v, bf16::ZERO, |i, o| math::f32_to_bf16_slice(i, o))),
    }
}

/// Rows per rayon task for row-wise loops over rows of `row_len` elements.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (ELEMWISE_CHUNK / row_len.max(1)).max(1)
}

/// Builds a `[rows, row_len]` result of `dtype` in parallel: `f(first_row, block)` fills an
/// f32 block of whole rows starting at row `first_row`. For f32 the block is the output
/// itself; for halves it is a per-task buffer rounded into the output, so no full-size f32
/// temporary exists.
pub(crate) fn produce_rows(
    dtype: DType,
    rows: usize,
    row_len: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) -> CpuStorage {
    fn halves<T: Copy + Send>(
        zero: T,
        (rows, row_len): (usize, usize),
        f: impl Fn(usize, &mut [f32]) + Sync,
        store: impl Fn(&[f32], &mut [T]) + Sync,
    ) -> Vec<T> {
        let mut out = vec![zero; rows * row_len];
        let per_task = rows_per_task(row_len);
        if !out.is_empty() {
            out.par_chunks_mut(per_task * row_len).enumerate().for_each(|(t, block)| {
                let mut buf = vec![0f32; block.len()];
                f(t * per_task, &mut buf);
                store(&buf, block);
            });
        }
        out
    }
    match dtype {
        DType::F32 => {
            let mut out = vec![0f32; rows * row_len];
            let per_task = rows_per_task(row_len);
            if !out.is_empty() {
                out.par_chunks_mut(per_task * row_len)
                    .enumerate()
                    .for_each(|(t, block)| f(t * per_task, block));
            }
            CpuStorage::F32(out)
        }
        DType::F16 => {
            CpuStorage::F16(halves(f16::ZERO, (rows, row_len), f, |src, dst| dst.convert_from_f32_slice(src)))
        }
        DType::BF16 => CpuStorage::BF16(halves(bf16::ZERO, (rows, row_len), f, math::f32_to_bf16_slice)),
    }
}

/// Elements `start..start + len` of `s` as f32: borrowed for f32 storage, converted otherwise.
/// Meant for the per-task blocks of [`produce_rows`].
pub(crate) fn read_f32(s: &CpuStorage, start: usize, len: usize) -> Cow<'_, [f32]> {
    match s {
        CpuStorage::F32(v) => Cow::Borrowed(&v[start..start + len]),
        CpuStorage::F16(v) => Cow::Owned(v[start..start + len].to_f32_vec()),
        CpuStorage::BF16(v) => Cow::Owned(v[start..start + len].to_f32_vec()),
    }
}

/// Applies `f` to every element in f32, in parallel, without widening the whole buffer:
/// half-precision inputs are widened and rounded back one block at a time.
pub(crate) fn unary_map(x: &CpuStorage, f: impl Fn(f32) -> f32 + Sync) -> CpuStorage {
    /// Block of elements converted at once inside one rayon task.
    const BLOCK: usize = 1024;
    fn halves<T: Copy + Send + Sync + HalfBlock>(v: &[T], f: &(impl Fn(f32) -> f32 + Sync)) -> Vec<T> {
        let mut out = v.to_vec();
        out.par_chunks_mut(ELEMWISE_CHUNK).for_each(|chunk| {
            let mut buf = [0f32; BLOCK];
            for block in chunk.chunks_mut(BLOCK) {
                let buf = &mut buf[..block.len()];
                T::to_f32s(block, buf);
                map_in_place(buf, f);
                T::from_f32s(buf, block);
            }
        });
        out
    }
    match x {
        CpuStorage::F32(v) => {
            let mut out = v.clone();
            out.par_chunks_mut(ELEMWISE_CHUNK).for_each(|c| map_in_place(c, &f));
            CpuStorage::F32(out)
        }
        CpuStorage::F16(v) => CpuStorage::F16(halves(v, &f)),
        CpuStorage::BF16(v) => CpuStorage::BF16(halves(v, &f)),
    }
}

/// `x = f(x)` for every element, [`math::vectorized`].
#[inline(always)]
fn map_in_place(xs: &mut [f32], f: &impl Fn(f32) -> f32) {
    math::vectorized(
        #[inline(always)]
        || xs.iter_mut().for_each(|a| *a = f(*a)),
    )
}

/// Slice conversion between a half type and f32, for [`unary_map`].
trait HalfBlock: Sized {
    fn to_f32s(src: &[Self], dst: &mut [f32]);
    fn from_f32s(src: &[f32], dst: &mut [Self]);
}

impl HalfBlock for f16 {
    fn to_f32s(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn from_f32s(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src);
    }
}

impl HalfBlock for bf16 {
    fn to_f32s(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn from_f32s(src: &[f32], dst: &mut [Self]) {
        math::f32_to_bf16_slice(src, dst);
    }
}

/// A stored element type, for ops that move elements without arithmetic.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    /// The elements of `s` if it holds this type.
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    /// Wraps a buffer of this type.
    fn wrap(v: Vec<Self>) -> CpuStorage;
    /// `dst[i] = src[i]` as f32 (equal lengths).
    fn widen_into(src: &[Self], dst: &mut [f32]);
}

impl Elem for f32 {
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        if let CpuStorage::F32(v) = s { Some(v) } else { None }
    }
    fn wrap(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    fn widen_into(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl Elem for f16 {
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        if let CpuStorage::F16(v) = s { Some(v) } else { None }
    }
    fn wrap(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F16(v)
    }
    fn widen_into(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
}

impl Elem for bf16 {
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        if let CpuStorage::BF16(v) = s { Some(v) } else { None }
    }
    fn wrap(v: Vec<Self>) -> CpuStorage {
        CpuStorage::BF16(v)
    }
    fn widen_into(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
}

/// Calls a generic data-movement function with the element type of `$dtype`:
/// `with_elem!(dtype, f(args))` runs `f::<f32>(args)`, `f::<f16>(args)` or `f::<bf16>(args)`.
macro_rules! with_elem {
    ($dtype:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $dtype {
            $crate::DType::F32 => $f::<f32>($($arg),*),
            $crate::DType::F16 => $f::<half::f16>($($arg),*),
            $crate::DType::BF16 => $f::<half::bf16>($($arg),*),
        }
    };
}
pub(crate) use with_elem;
