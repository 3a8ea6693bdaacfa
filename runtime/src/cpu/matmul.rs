//! Matrix products: the one safe wrapper around `gemm::gemm`, linear layers and batched matmul.
//!
//! Everything that multiplies matrices on the CPU (linear, conv, attention) goes through
//! `gemm_f32`, which checks that every strided access stays inside its slice before handing
//! raw pointers to `gemm`.
//!
//! `gemm` chooses its code path from the whole problem: a matrix-vector kernel for one row or
//! column, a dot-product kernel when `m * n <= 256`, and a K blocking that differs between
//! `m, n <= 64` and larger products. Each path rounds differently, so a row's result would
//! depend on how many rows share the product, i.e. on the batch. Above those sizes the K
//! blocking depends on `(n, k)` and the cache sizes only, and every row is summed over K in the
//! same order whatever `m`, the row's place or the thread count (threads split rows and
//! columns, never K). Products whose row count grows with the batch (linear, conv) go through
//! `gemm_rows`, which calls `gemm` once on all the rows when there are at least
//! `min_rows(n)` of them and pads smaller products to that many rows: a row's result is
//! then a function of that row, the other operand and `(n, k)` alone.

use gemm::Parallelism;
use rayon::prelude::*;

use half::bf16;

use super::amx::{ASegment, PackedB, gemm_bf16};
use super::{round_to, widen};
use crate::CpuStorage;

/// A read-only strided matrix inside a slice: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T = f32> {
    /// The elements; the matrix starts at index 0.
    pub data: &'a [T],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major matrix with `cols` columns (`[N, K]` read as `[K, N]`).
    pub fn transposed(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: 1, cs: cols }
    }

    /// Whether a `rows x cols` matrix with these strides fits in `data`.
    pub(crate) fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// How `gemm_f32` treats the destination's previous contents.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dst {
    /// `dst = scale * a * b`.
    Overwrite,
    /// `dst += scale * a * b`.
    Accumulate,
}

/// `dst[m, n] (+)= scale * a[m, k] * b[k, n]`, f32 throughout; `dst` is row-major with row
/// stride `dst_rs`. Use `Parallelism::None` when calling from inside a rayon task.
///
/// # Panics
/// If a matrix does not fit in its slice: callers derive all sizes from validated shapes,
/// so this guards the unsafe call against bugs in the backend, not against user input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    mode: Dst,
    a: Mat<'_>,
    b: Mat<'_>,
    scale: f32,
    parallelism: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let d = Mat { data: dst, rs: dst_rs, cs: 1 };
    assert!(d.fits(m, n) && a.fits(m, k) && b.fits(k, n), "gemm_f32: operand out of bounds");
    if k == 0 {
        if mode == Dst::Overwrite {
            dst.chunks_mut(dst_rs).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    // SAFETY: the assert above proves that every index the product reads or writes lies inside
    // the corresponding slice, and `dst` is borrowed mutably so nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            mode == Dst::Accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Row granularity of callers that cut a product into pieces (conv's im2col chunks): any
/// multiple works, since [`gemm_rows`] gives every row the same result whatever the piece.
pub(crate) const GEMM_ROWS: usize = 64;

/// The fewest rows of a `gemm` call made by [`gemm_rows`] for `n` columns: more than 64 (the
/// small-product K blocking) and more than `256 / n` (the dot-product kernel), so that every
/// call takes the path a large product takes.
pub(crate) fn min_rows(n: usize) -> usize {
    65.max(256 / n.max(1) + 1)
}

/// [`gemm_f32`] with a result per row that does not depend on `m`: one call on all rows when
/// there are at least [`min_rows`]`(n)`, else the rows copied into a zero-padded product of
/// that many rows with the same strides (`gemm` also looks at the strides). `a` must have unit
/// column stride. With `parallel`, `gemm` spreads the product over rayon's threads; without,
/// everything runs on the caller's thread, as needed inside a rayon task.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_rows(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    mode: Dst,
    a: Mat<'_>,
    b: Mat<'_>,
    scale: f32,
    parallel: bool,
) {
    assert!(a.cs == 1, "gemm_rows: the left operand must have unit column stride");
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if parallel { Parallelism::Rayon(0) } else { Parallelism::None };
    if m >= min_rows(n) {
        gemm_f32((m, n, k), dst, dst_rs, mode, a, b, scale, parallelism);
    } else {
        gemm_padded((m, n, k), dst, dst_rs, mode, a, b, scale, parallelism);
    }
}

/// [`gemm_rows`] of `rows < min_rows(n)` rows of `a` (unit column stride) and of `dst`,
/// multiplied as the first rows of a [`min_rows`]`(n)`-row product whose other rows are zero.
#[allow(clippy::too_many_arguments)]
fn gemm_padded(
    (rows, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    mode: Dst,
    a: Mat<'_>,
    b: Mat<'_>,
    scale: f32,
    parallelism: Parallelism,
) {
    let padded = min_rows(n);
    let used = (rows - 1) * a.rs + k; // the rows' span in `a`, gaps included
    let mut lhs = vec![0f32; (padded - 1) * a.rs + k]; // [padded, k], row stride a.rs
    lhs[..used].copy_from_slice(&a.data[..used]);
    let mut out = vec![0f32; (padded - 1) * dst_rs + n]; // [padded, n], row stride dst_rs
    if mode == Dst::Accumulate {
        for r in 0..rows {
            out[r * dst_rs..][..n].copy_from_slice(&dst[r * dst_rs..][..n]);
        }
    }
    let lhs = Mat { data: &lhs, rs: a.rs, cs: 1 };
    gemm_f32((padded, n, k), &mut out, dst_rs, mode, lhs, b, scale, parallelism);
    for r in 0..rows {
        dst[r * dst_rs..][..n].copy_from_slice(&out[r * dst_rs..][..n]);
    }
}

/// A destination of `rows x n` filled with `bias` on every row, or zeros.
pub(crate) fn bias_rows(bias: Option<&[f32]>, rows: usize, n: usize) -> Vec<f32> {
    match bias {
        Some(b) if n > 0 => {
            let mut out = vec![0.0; rows * n];
            out.par_chunks_mut(n * (super::ELEMWISE_CHUNK / n).max(1))
                .for_each(|c| c.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(b)));
            out
        }
        _ => vec![0.0; rows * n],
    }
}

/// `x[m, k] * w[n, k]^T + bias[n]` on f32 slices, into a new `[m, n]` buffer; each row's result
/// is independent of `m` ([`gemm_rows`]).
pub(crate) fn linear_f32(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
) -> Vec<f32> {
    let mut out = bias_rows(bias, m, n);
    let mode = if bias.is_some() { Dst::Accumulate } else { Dst::Overwrite };
    gemm_rows((m, n, k), &mut out, n, mode, Mat::rows(x, k), Mat::transposed(w, k), 1.0, true);
    out
}

/// Linear layer: `x [m, k]`, PyTorch-layout `weight [n, k]`, `bias [n]` -> `[m, n]`.
pub(crate) fn linear(
    x: &CpuStorage,
    weight: &CpuStorage,
    bias: Option<&CpuStorage>,
    (m, k, n): (usize, usize, usize),
) -> CpuStorage {
    let bf = bias.map(widen);
    if let (CpuStorage::BF16(xb), CpuStorage::BF16(wb)) = (x, weight)
        && k.is_multiple_of(32)
        && k > 0
        && super::amx::enabled()
    {
        return round_to(linear_bf16_tiles(xb, wb, bf.as_deref(), (m, k, n)), x.dtype());
    }
    let (xf, wf) = (widen(x), widen(weight));
    round_to(linear_f32(&xf, &wf, bf.as_deref(), (m, k, n)), x.dtype())
}

/// [`linear_f32`] on AMX tiles for bf16 `x [m, k]` and `w [n, k]`, `k` a multiple of 32.
pub(crate) fn linear_bf16_tiles(
    x: &[bf16],
    w: &[bf16],
    bias: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    let packed = PackedB::from_columns(n, k, |j| &w[j * k..(j + 1) * k]);
    let segments = [ASegment { offset: 0, steps: k / 32 }];
    gemm_bf16(m, x, k, &segments, &packed, &mut out, n, Dst::Overwrite, 1.0, bias, true);
    out
}

/// `dst[m, n] += scale * a[m, k] * b[k, n]` on row-major f32 slices, spread over rayon's
/// threads: summing low-rank updates into a weight (LoRA merging) without a temporary.
pub fn accumulate_product(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    scale: f32,
) -> crate::Result<()> {
    let fits = |len: usize, rows: usize, cols: usize| rows.checked_mul(cols) == Some(len);
    if !(fits(dst.len(), m, n) && fits(a.len(), m, k) && fits(b.len(), k, n)) {
        return Err(crate::Error::shape(
            "accumulate_product",
            format!(
                "[{m}, {k}] x [{k}, {n}] into [{m}, {n}] does not fit slices of {}, {} and {} elements",
                a.len(),
                b.len(),
                dst.len()
            ),
        ));
    }
    gemm_f32(
        (m, n, k),
        dst,
        n,
        Dst::Accumulate,
        Mat::rows(a, k),
        Mat::rows(b, n),
        scale,
        Parallelism::Rayon(0),
    );
    Ok(())
}

/// Batched matrix product: `a [batch, m, k] * b [batch, k, n] -> [batch, m, n]`. Every product
/// has the same `(m, n, k)`, so each is independent of `batch` (`gemm`'s parallelism only
/// divides the output between threads; it never changes an element's arithmetic).
pub(crate) fn matmul(
    a: &CpuStorage,
    b: &CpuStorage,
    (batch, m, k, n): (usize, usize, usize, usize),
) -> CpuStorage {
    let (af, bf) = (widen(a), widen(b));
    let mut out = vec![0f32; batch * m * n];
    if m * n == 0 {
        return round_to(out, a.dtype());
    }
    let one = |(i, dst): (usize, &mut [f32]), par| {
        let lhs = Mat::rows(&af[i * m * k..], k);
        let rhs = Mat::rows(&bf[i * k * n..], n);
        gemm_f32((m, n, k), dst, n, Dst::Overwrite, lhs, rhs, 1.0, par);
    };
    // Many small products: one rayon task each, gemm single-threaded. Few large ones: gemm
    // parallelises each product itself.
    if batch >= rayon::current_num_threads() && m * n * k < 1 << 21 {
        out.par_chunks_mut(m * n).enumerate().for_each(|job| one(job, Parallelism::None));
    } else {
        out.chunks_mut(m * n).enumerate().for_each(|job| one(job, Parallelism::Rayon(0)));
    }
    round_to(out, a.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row count gives each row the bits a large product gives it, across the K blocking
    /// (k up to 3000), narrow outputs (the dot-product path) and both threading modes.
    #[test]
    fn a_rows_result_does_not_depend_on_the_row_count() {
        let mut seed = 0x1234_5678_u64;
        let mut draw = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                })
                .collect()
        };
        for (n, k) in [(3, 7), (4, 600), (40, 3000), (64, 64), (320, 1100)] {
            let big = 700;
            let (a, w) = (draw(big * k), draw(n * k)); // a [big, k], w [n, k]
            let mut whole = draw(big * n);
            let start = whole.clone();
            gemm_rows(
                (big, n, k),
                &mut whole,
                n,
                Dst::Accumulate,
                Mat::rows(&a, k),
                Mat::transposed(&w, k),
                1.0,
                true,
            );
            for m in [1, 2, 5, 64, 65, 100, 299, 513] {
                for parallel in [false, true] {
                    let mut part = start[..m * n].to_vec();
                    let lhs = Mat::rows(&a[..m * k], k);
                    gemm_rows(
                        (m, n, k),
                        &mut part,
                        n,
                        Dst::Accumulate,
                        lhs,
                        Mat::transposed(&w, k),
                        1.0,
                        parallel,
                    );
                    for (i, (x, y)) in part.iter().zip(&whole).enumerate() {
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "n {n} k {k} m {m} parallel {parallel} element {i}"
                        );
                    }
                }
            }
        }
    }
}
