//! `dst[m, n] (+)= scale · A[m, K] · B[K, n] (+ bias)` with B packed into panels and A read in
//! place, on the register tile of [`super::kernel`].
//!
//! Work is cut into tasks of up to `TASK_ROWS` rows by `TASK_PANELS` panels (one rayon task
//! each, writing its own rectangle of `dst`). A task walks K in blocks of at most `KC`, each
//! block's panels, and each panel's 8-row tiles: a K block of B's panel (24 KiB) is reused from
//! L1 by all the task's row tiles, and a K block of the task's rows (48 KiB) from L2 by all its
//! panels. Partial sums wait in a task scratch between K blocks; they are f32 like the
//! registers, so blocking changes no bits.

use rayon::prelude::*;

use super::kernel::{MR, NR, tile_rows};
use crate::cpu::matmul::{Dst, Mat};

/// Rows per task: twelve register tiles.
const TASK_ROWS: usize = 12 * MR;
/// Panels per task (384 columns).
const TASK_PANELS: usize = 8;
/// Most K elements per block.
const KC: usize = 128;

/// 64 bytes of f32: the unit of [`Aligned`].
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

/// Zero-initialised f32 storage that starts on a 64-byte boundary, so the kernel's 16-lane
/// loads and stores never straddle two cache lines (measured: a sixth of the tile's speed).
struct Aligned {
    lines: Vec<Line>,
    len: usize,
}

impl Aligned {
    fn zeros(len: usize) -> Aligned {
        Aligned { lines: vec![Line([0.0; 16]); len.div_ceil(16)], len }
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: `Line` is `repr(C)` around `[f32; 16]`, so the lines are `16·lines.len() >= len`
        // contiguous, initialised floats.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, and `self` is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

/// B `[k, n]` packed for [`gemm_packed`]: panel `p` holds columns `48p..48p + 48` as `k` rows
/// of 48 contiguous floats, columns past `n` zero.
pub(crate) struct Panels {
    data: Aligned,
    k: usize,
    n: usize,
}

impl Panels {
    /// Packs `b` as a `[k, n]` matrix (any strides: a weight `[n, k]` is `Mat::transposed`),
    /// panels in parallel on rayon's threads.
    pub fn pack(b: Mat<'_>, k: usize, n: usize) -> Panels {
        assert!(b.fits(k, n), "Panels::pack: B out of bounds");
        let mut data = Aligned::zeros(n.div_ceil(NR) * k * NR);
        if k > 0 {
            let fill = |(p, panel): (usize, &mut [f32])| {
                let cols = NR * p..n.min(NR * p + NR);
                if b.rs == 1 {
                    // Columns contiguous in K (a weight's rows): read each column once.
                    for (jj, j) in cols.enumerate() {
                        let col = &b.data[j * b.cs..][..k];
                        col.iter().enumerate().for_each(|(l, v)| panel[l * NR + jj] = *v);
                    }
                } else {
                    for (l, row) in panel.chunks_exact_mut(NR).enumerate() {
                        for (jj, j) in cols.clone().enumerate() {
                            row[jj] = b.data[l * b.rs + j * b.cs];
                        }
                    }
                }
            };
            data.as_mut_slice().par_chunks_mut(k * NR).enumerate().for_each(fill);
        }
        Panels { data, k, n }
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Rows (K).
    pub fn k(&self) -> usize {
        self.k
    }
}

/// A run of A's K: for row `i`, K elements `0..len` of the run are `a[i·a_rs + offset..][..len]`.
/// A product's runs, in order, cover B's K.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub offset: usize,
    pub len: usize,
}

/// One K block: `len` elements of A at `offset` in each row, B rows from `k0`.
#[derive(Clone, Copy)]
struct Block {
    offset: usize,
    len: usize,
    k0: usize,
}

/// A shareable pointer to `dst`, whose tasks write disjoint rectangles.
#[derive(Clone, Copy)]
struct DstPtr(*mut f32);
// SAFETY: tasks write disjoint elements through it (see `gemm_packed`), and `dst` outlives them.
unsafe impl Send for DstPtr {}
unsafe impl Sync for DstPtr {}

impl DstPtr {
    /// The element `offset` past the start (a method, so closures capture the whole wrapper).
    fn add(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `dst[i, j] (+)= scale · Σ_k A[i, k] B[k, j] (+ bias[j])` for `i < m`, A's rows `a_rs` apart
/// in `a` and read through `segments`, `dst` row-major with row stride `dst_rs`. With
/// `parallel`, tasks run on rayon's threads; without, on the caller's (inside a rayon task).
///
/// # Panics
/// If the segments do not cover B's K, a row's segment lies outside `a`, `dst` is too short or
/// `bias` is not `n` long: callers derive all sizes from validated shapes, so these guard the
/// unsafe kernel against bugs in the backend, not against user input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed(
    m: usize,
    a: &[f32],
    a_rs: usize,
    segments: &[Segment],
    b: &Panels,
    dst: &mut [f32],
    dst_rs: usize,
    mode: Dst,
    scale: f32,
    bias: Option<&[f32]>,
    parallel: bool,
) {
    assert!(super::available(), "gemm_packed without AVX-512");
    let n = b.n();
    assert_eq!(segments.iter().map(|s| s.len).sum::<usize>(), b.k(), "gemm_packed: segments do not cover K");
    if m == 0 || n == 0 {
        return;
    }
    let reach = segments.iter().map(|s| s.offset + s.len).max().unwrap_or(0);
    assert!((m - 1) * a_rs + reach <= a.len(), "gemm_packed: A out of bounds");
    assert!(dst_rs >= n && dst.len() >= (m - 1) * dst_rs + n, "gemm_packed: dst too short");
    assert!(bias.is_none_or(|b| b.len() == n), "gemm_packed: bias is not {n} long");
    let blocks = k_blocks(segments);
    let panels = n.div_ceil(NR);
    // Panel groups of at most TASK_PANELS, as even as the panel count allows.
    let col_tasks = panels.div_ceil(TASK_PANELS);
    let group = panels.div_ceil(col_tasks);
    let row_tasks = m.div_ceil(TASK_ROWS);
    let out = DstPtr(dst.as_mut_ptr());
    let run = |task: usize| {
        let (rt, ct) = (task / col_tasks, task % col_tasks);
        let (row0, p0) = (rt * TASK_ROWS, ct * group);
        let (rows, ps) = (TASK_ROWS.min(m - row0), group.min(panels - p0));
        let (tiles, c_rs) = (rows.div_ceil(MR), ps * NR);
        let mut c = Aligned::zeros(rows * c_rs); // [rows, ps·48]: the task's partial sums
        let c = c.as_mut_slice();
        for (bi, blk) in blocks.iter().enumerate() {
            for p in 0..ps {
                let panel = &b.data.as_slice()[(p0 + p) * b.k * NR + blk.k0 * NR..][..blk.len * NR];
                for t in 0..tiles {
                    let r = t * MR;
                    // SAFETY: rows `row0 + r..` below `m` read `a` inside the bound asserted
                    // above; the panel slice holds `len` rows of 48; `c` holds the tile's rows.
                    unsafe {
                        tile_rows(
                            MR.min(rows - r),
                            a.as_ptr().add((row0 + r) * a_rs + blk.offset),
                            a_rs,
                            blk.len,
                            panel.as_ptr(),
                            c.as_mut_ptr().add(r * c_rs + p * NR),
                            c_rs,
                            bi == 0,
                        );
                    }
                }
            }
        }
        let (j0, cols) = (p0 * NR, (ps * NR).min(n - p0 * NR));
        let bias = bias.map(|b| &b[j0..j0 + cols]);
        for (r, sums) in c.chunks_exact(c_rs).take(rows).enumerate() {
            // SAFETY: row `row0 + r < m`, columns `j0..j0 + cols <= n`: inside `dst` (asserted
            // above), and no other task writes this row's columns of this panel group.
            let d = unsafe { std::slice::from_raw_parts_mut(out.add((row0 + r) * dst_rs + j0), cols) };
            let sums = &sums[..cols];
            match (mode, bias) {
                (Dst::Overwrite, None) => d.iter_mut().zip(sums).for_each(|(d, v)| *d = scale * v),
                (Dst::Accumulate, None) => d.iter_mut().zip(sums).for_each(|(d, v)| *d += scale * v),
                (Dst::Overwrite, Some(bias)) => {
                    d.iter_mut().zip(sums).zip(bias).for_each(|((d, v), b)| *d = scale * v + b)
                }
                (Dst::Accumulate, Some(bias)) => {
                    d.iter_mut().zip(sums).zip(bias).for_each(|((d, v), b)| *d += scale * v + b)
                }
            }
        }
    };
    let tasks = row_tasks * col_tasks;
    if parallel {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        (0..tasks).for_each(run);
    }
}

/// The segments cut into K blocks of at most [`KC`], in order.
fn k_blocks(segments: &[Segment]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut k0 = 0;
    for s in segments {
        for start in (0..s.len).step_by(KC) {
            let len = KC.min(s.len - start);
            blocks.push(Block { offset: s.offset + start, len, k0: k0 + start });
        }
        k0 += s.len;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;

    fn draw(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.unit_variance()).collect()
    }

    /// `a [m, k]` (row stride `a_rs`, read through `segments`) times `w [n, k]ᵀ` in f64, with
    /// the sum of |products| for the tolerance.
    fn reference(
        a: &[f32],
        a_rs: usize,
        segments: &[Segment],
        w: &[f32],
        m: usize,
        n: usize,
    ) -> Vec<(f64, f64)> {
        let k: usize = segments.iter().map(|s| s.len).sum();
        let mut out = Vec::with_capacity(m * n);
        for i in 0..m {
            let row: Vec<f32> =
                segments.iter().flat_map(|s| a[i * a_rs + s.offset..][..s.len].iter().copied()).collect();
            for j in 0..n {
                let (mut sum, mut abs) = (0f64, 0f64);
                for (l, x) in row.iter().enumerate() {
                    let p = f64::from(*x) * f64::from(w[j * k + l]);
                    sum += p;
                    abs += p.abs();
                }
                out.push((sum, abs));
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn product(
        a: &[f32],
        a_rs: usize,
        segments: &[Segment],
        w: &[f32],
        (m, n): (usize, usize),
        start: &[f32],
        mode: Dst,
        scale: f32,
        bias: Option<&[f32]>,
        parallel: bool,
    ) -> Vec<f32> {
        let k: usize = segments.iter().map(|s| s.len).sum();
        let packed = Panels::pack(Mat::transposed(w, k), k, n);
        let mut out = start.to_vec();
        gemm_packed(m, a, a_rs, segments, &packed, &mut out, n, mode, scale, bias, parallel);
        out
    }

    /// Products of random matrices match an f64 reference to f32 accumulation accuracy, for row
    /// counts off the 8-row tile and the task size, columns off the 48-column panel, K across
    /// several K blocks, both modes, a scale and a bias.
    #[test]
    fn products_match_an_f64_reference() {
        if !super::super::available() {
            eprintln!("skipped: this CPU has no AVX-512 F");
            return;
        }
        let mut rng = SplitMix64::new(17);
        for (m, k, n) in [(1, 1, 1), (13, 40, 33), (97, 300, 70), (130, 2 * KC + 5, 300), (25, 7, 400)] {
            let (a, w) = (draw(&mut rng, m * k), draw(&mut rng, n * k));
            let (bias, start) = (draw(&mut rng, n), draw(&mut rng, m * n));
            let whole = [Segment { offset: 0, len: k }];
            let want = reference(&a, k, &whole, &w, m, n);
            for (mode, scale, bias) in
                [(Dst::Overwrite, 1.0, None), (Dst::Accumulate, 0.375, Some(&bias[..]))]
            {
                let got = product(&a, k, &whole, &w, (m, n), &start, mode, scale, bias, true);
                for (i, (g, (sum, abs))) in got.iter().zip(&want).enumerate() {
                    let base = if mode == Dst::Accumulate { f64::from(start[i]) } else { 0.0 };
                    let b = bias.map_or(0.0, |b| f64::from(b[i % n]));
                    let expect = base + f64::from(scale) * sum + b;
                    let tol = 1e-6 * (1.0 + f64::from(scale) * abs + base.abs() + b.abs());
                    assert!((f64::from(*g) - expect).abs() <= tol, "{m}x{k}x{n} {i}: {g} vs {expect}");
                }
            }
        }
    }

    /// A row's bits do not depend on how many rows share the product, on where the tiles and
    /// tasks fall, or on the threads.
    #[test]
    fn a_rows_result_does_not_depend_on_the_row_count() {
        if !super::super::available() {
            eprintln!("skipped: this CPU has no AVX-512 F");
            return;
        }
        let mut rng = SplitMix64::new(19);
        let (k, n, big) = (KC + 50, 70, 300);
        let (a, w) = (draw(&mut rng, big * k), draw(&mut rng, n * k));
        let whole = [Segment { offset: 0, len: k }];
        let all = product(&a, k, &whole, &w, (big, n), &vec![0.0; big * n], Dst::Overwrite, 1.0, None, true);
        for (m, parallel) in
            [(1, true), (2, false), (7, true), (8, true), (9, false), (97, true), (299, false)]
        {
            let zeros = vec![0.0; m * n];
            let part =
                product(&a[..m * k], k, &whole, &w, (m, n), &zeros, Dst::Overwrite, 1.0, None, parallel);
            for (i, (x, y)) in part.iter().zip(&all).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "m {m} element {i}");
            }
        }
    }

    /// B given by rows (`[k, n]` row-major) packs to the same panels as B given by columns.
    #[test]
    fn packing_by_rows_equals_packing_by_columns() {
        let mut rng = SplitMix64::new(31);
        let (k, n) = (37, 70);
        let w = draw(&mut rng, n * k); // [n, k]
        let bt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect(); // [k, n]
        let (by_cols, by_rows) =
            (Panels::pack(Mat::transposed(&w, k), k, n), Panels::pack(Mat::rows(&bt, n), k, n));
        assert_eq!(by_cols.data.as_slice(), by_rows.data.as_slice());
        assert_eq!(by_cols.data.as_slice()[31 * NR + 5], w[5 * k + 31], "panel 0, K row 31, column 5");
    }

    /// Segments read A at their offsets, in their order, across K blocks: two runs over shifted
    /// columns of a wider A match the f64 product of those columns gathered.
    #[test]
    fn segments_read_a_at_their_offsets() {
        if !super::super::available() {
            eprintln!("skipped: this CPU has no AVX-512 F");
            return;
        }
        let mut rng = SplitMix64::new(23);
        let (m, n, a_rs) = (45, 40, 700);
        let segments = [Segment { offset: 290, len: KC + 10 }, Segment { offset: 3, len: 90 }];
        let a = draw(&mut rng, m * a_rs);
        let w = draw(&mut rng, n * (KC + 100));
        let want = reference(&a, a_rs, &segments, &w, m, n);
        let got =
            product(&a, a_rs, &segments, &w, (m, n), &vec![0.0; m * n], Dst::Overwrite, 1.0, None, true);
        for (i, (g, (sum, abs))) in got.iter().zip(&want).enumerate() {
            assert!((f64::from(*g) - sum).abs() <= 1e-6 * (1.0 + abs), "element {i}: {g} vs {sum}");
        }
    }
}
