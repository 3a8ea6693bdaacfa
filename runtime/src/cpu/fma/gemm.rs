//! `dst[rows, n] = A[rows, K] · B[K, n] (+ bias)` with B packed into panels and A read in place,
//! on the register tile of [`super::kernel`], rows given as tiles at any offsets.
//!
//! Work is cut into tasks of up to `TASK_TILES` row tiles by `TASK_PANELS` panels (one rayon
//! task each, writing its own elements of `dst`). A task walks K in blocks of at most `KC`, each
//! block's panels, and each panel's row tiles: a K block of B's panel (24 KiB) is reused from
//! L1 by all the task's row tiles, and a K block of the task's rows (48 KiB) from L2 by all its
//! panels. Partial sums wait in `dst` itself between K blocks (f32, like the registers, so
//! blocking changes no bits), and the last block adds the bias: each output element is written
//! by its tile alone, with no scratch and no second pass.

use std::sync::Mutex;

use rayon::prelude::*;

use super::kernel::{MR, NR, tile_rows};
use crate::cpu::Elem;
use crate::cpu::matmul::Mat;

/// Row tiles per task (96 rows).
const TASK_TILES: usize = 12;
/// Panels per task (384 columns).
const TASK_PANELS: usize = 8;
/// Most K elements per block.
const KC: usize = 128;
/// K rows packed at a time from a column-major B.
const PACK_K: usize = 64;

/// 64 bytes of f32: the unit of [`Aligned`].
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

/// Initialised f32 storage that starts on a 64-byte boundary, so the kernel's 16-lane
/// loads and stores never straddle two cache lines (measured: a sixth of the tile's speed).
struct Aligned {
    lines: Vec<Line>,
    len: usize,
}

impl Aligned {
    /// `len` floats, in a spare buffer's memory when one is kept (holding earlier values), else
    /// in fresh zeros. Takes the smallest spare that is big enough, else the largest (grown).
    fn reuse(len: usize) -> Aligned {
        let lines = len.div_ceil(16);
        let mut spares = SPARES.lock().unwrap_or_else(|e| e.into_inner());
        // Spares are sorted largest first.
        let pick = spares.iter().rposition(|b| b.lines.capacity() >= lines);
        let mut buffer = match pick.or(if spares.is_empty() { None } else { Some(0) }) {
            Some(i) => spares.remove(i),
            None => Aligned { lines: Vec::new(), len: 0 },
        };
        drop(spares);
        buffer.lines.resize(lines, Line([0.0; 16]));
        buffer.len = len;
        buffer
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

/// Panel buffers kept for the next product (at most `MAX_SPARES`, the largest): packing into
/// fresh memory takes a page fault per 4 KiB, which for a deep convolution of a small image
/// (SD 1.5's 3x3 1280 -> 1280 weights, 59 MB) cost as much as the product.
static SPARES: Mutex<Vec<Aligned>> = Mutex::new(Vec::new());

/// Buffers [`SPARES`] keeps: one per concurrent product on two threads.
const MAX_SPARES: usize = 2;

/// B `[k, n]` packed for [`gemm_packed`]: panel `p` holds columns `48p..48p + 48` as `k` rows
/// of 48 contiguous floats, columns past `n` zero.
pub(crate) struct Panels {
    data: Aligned,
    k: usize,
    n: usize,
}

impl Panels {
    /// Packs `b` as a `[k, n]` matrix (any strides: a weight `[n, k]` is `Mat::transposed`),
    /// widened to f32 as it is read (an f16 checkpoint's weight needs no f32 copy), panels in
    /// parallel on rayon's threads.
    pub fn pack<T: Elem>(b: Mat<'_, T>, k: usize, n: usize) -> Panels {
        assert!(b.fits(k, n), "Panels::pack: B out of bounds");
        let mut data = Aligned::reuse(n.div_ceil(NR) * k * NR);
        if k > 0 {
            let fill = |(p, panel): (usize, &mut [f32])| {
                let cols = NR * p..n.min(NR * p + NR);
                if cols.len() < NR {
                    // The last panel's columns past `n` (a reused buffer holds old values there).
                    panel.chunks_exact_mut(NR).for_each(|row| row[cols.len()..].fill(0.0));
                }
                if b.rs == 1 {
                    // Columns contiguous in K (a weight's rows): read them in runs of PACK_K, so
                    // the panel rows being filled (PACK_K x 48, 12 KiB) stay in L1.
                    let mut run = [0f32; PACK_K];
                    for l0 in (0..k).step_by(PACK_K) {
                        let rows = &mut panel[l0 * NR..(k.min(l0 + PACK_K)) * NR];
                        let run = &mut run[..rows.len() / NR];
                        for (jj, j) in cols.clone().enumerate() {
                            T::widen_into(&b.data[j * b.cs + l0..][..run.len()], run);
                            rows.chunks_exact_mut(NR).zip(&*run).for_each(|(row, v)| row[jj] = *v);
                        }
                    }
                } else {
                    for (l, row) in panel.chunks_exact_mut(NR).enumerate() {
                        for (jj, j) in cols.clone().enumerate() {
                            let v = &b.data[l * b.rs + j * b.cs];
                            T::widen_into(std::slice::from_ref(v), std::slice::from_mut(&mut row[jj]));
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

impl Drop for Panels {
    /// Keeps the buffer for the next product, in place of a smaller spare when all are taken.
    fn drop(&mut self) {
        let buffer = std::mem::replace(&mut self.data, Aligned { lines: Vec::new(), len: 0 });
        let mut spares = SPARES.lock().unwrap_or_else(|e| e.into_inner());
        spares.push(buffer);
        spares.sort_by_key(|b| std::cmp::Reverse(b.lines.capacity()));
        spares.truncate(MAX_SPARES);
    }
}

/// A run of A's K: for row `i`, K elements `0..len` of the run are `a[i·a_rs + offset..][..len]`.
/// A product's runs, in order, cover B's K.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub offset: usize,
    pub len: usize,
}

/// Up to [`MR`] rows of a product: row `r < rows` reads A from element `a + r·a_rs` and writes
/// `dst` from element `dst + r·dst_rs`. A convolution's tiles are runs of output pixels along
/// one image row, so no rows are computed on the padding and none are copied afterwards.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowTile {
    pub a: usize,
    pub dst: usize,
    pub rows: usize,
}

/// One K block: `len` elements of A at `offset` in each row, B rows from `k0`.
#[derive(Clone, Copy)]
struct Block {
    offset: usize,
    len: usize,
    k0: usize,
}

/// Where a tile's sums go: `cols` (1..=NR) columns of rows `rs` apart from `c`. With
/// `accumulate` the sums start from what `c` holds (the earlier K blocks), else from zero; with
/// `bias` (the last K block) `bias[j]` is added before the store. Columns past `cols` are
/// neither read nor written, so a panel's edge never touches its neighbours' elements.
#[derive(Clone, Copy)]
pub(super) struct Sums {
    pub c: *mut f32,
    pub rs: usize,
    pub cols: usize,
    pub accumulate: bool,
    pub bias: Option<*const f32>,
}

/// A shareable pointer to `dst`, whose tasks write disjoint elements.
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

/// `dst[t.dst + r·dst_rs + j] = Σ_k A[t.a + r·a_rs, k] B[k, j] (+ bias[j])` for every row
/// `r < t.rows` of every tile `t`, `j < n`, A's K read through `segments`. Tasks run on
/// rayon's threads.
///
/// # Panics
/// If the segments do not cover B's K, a tile has no rows or more than [`MR`], reads A outside
/// `a`, writes outside `dst` or overlaps the tile before it (tiles come in increasing `dst`
/// order, each ending where the next may start), or `bias` is not `n` long: callers derive all
/// of these from validated shapes, so they guard the unsafe kernel against bugs in the
/// backend, not against user input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed(
    a: &[f32],
    a_rs: usize,
    segments: &[Segment],
    tiles: &[RowTile],
    b: &Panels,
    bias: Option<&[f32]>,
    dst: &mut [f32],
    dst_rs: usize,
) {
    let n = b.n();
    assert_eq!(segments.iter().map(|s| s.len).sum::<usize>(), b.k(), "gemm_packed: segments do not cover K");
    assert!(bias.is_none_or(|b| b.len() == n), "gemm_packed: bias is not {n} long");
    assert!(dst_rs >= n, "gemm_packed: dst rows overlap");
    let reach = segments.iter().map(|s| s.offset + s.len).max().unwrap_or(0);
    let mut free = 0; // the first element of `dst` the next tile may write
    for t in tiles {
        assert!((1..=MR).contains(&t.rows), "gemm_packed: a tile of {} rows", t.rows);
        assert!(t.a + (t.rows - 1) * a_rs + reach <= a.len(), "gemm_packed: A out of bounds");
        assert!(t.dst >= free, "gemm_packed: tiles overlap or are out of order");
        free = t.dst + (t.rows - 1) * dst_rs + n;
        assert!(free <= dst.len(), "gemm_packed: dst too short");
    }
    assert!(super::available(), "gemm_packed without AVX-512");
    if n == 0 || tiles.is_empty() {
        return;
    }
    if b.k() == 0 {
        // No terms: the bias, or zeros.
        for t in tiles {
            for r in 0..t.rows {
                let row = &mut dst[t.dst + r * dst_rs..][..n];
                match bias {
                    Some(b) => row.copy_from_slice(b),
                    None => row.fill(0.0),
                }
            }
        }
        return;
    }
    let blocks = k_blocks(segments);
    let panels = n.div_ceil(NR);
    // Panel groups of at most TASK_PANELS, as even as the panel count allows.
    let col_tasks = panels.div_ceil(TASK_PANELS);
    let group = panels.div_ceil(col_tasks);
    // Tile groups of at most TASK_TILES, likewise even: 16 tiles are two tasks of 8, not 12 and 4.
    let row_tasks = tiles.len().div_ceil(TASK_TILES);
    let tile_group = tiles.len().div_ceil(row_tasks);
    let out = DstPtr(dst.as_mut_ptr());
    let run = |task: usize| {
        let (rt, ct) = (task / col_tasks, task % col_tasks);
        let my_tiles = &tiles[rt * tile_group..tiles.len().min(rt * tile_group + tile_group)];
        let p0 = ct * group;
        for (bi, blk) in blocks.iter().enumerate() {
            let last = bi + 1 == blocks.len();
            for p in p0..panels.min(p0 + group) {
                let panel = &b.data.as_slice()[p * b.k * NR + blk.k0 * NR..][..blk.len * NR];
                let j0 = p * NR;
                for t in my_tiles {
                    let sums = Sums {
                        c: out.add(t.dst + j0),
                        rs: dst_rs,
                        cols: NR.min(n - j0),
                        accumulate: bi > 0,
                        bias: bias.filter(|_| last).map(|b| b[j0..].as_ptr()),
                    };
                    // SAFETY: the tile's rows read `a` inside the bound asserted above; the
                    // panel slice holds `len` rows of 48; the tile's rows, columns
                    // `j0..j0 + cols <= n`, lie inside `dst` (asserted) and no other task
                    // writes them: tiles do not overlap, and tasks split tiles and panels.
                    unsafe {
                        tile_rows(
                            t.rows,
                            a.as_ptr().add(t.a + blk.offset),
                            a_rs,
                            blk.len,
                            panel.as_ptr(),
                            sums,
                        )
                    };
                }
            }
        }
    };
    (0..row_tasks * col_tasks).into_par_iter().for_each(run);
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

    /// Tiles over `m` consecutive rows: row `i` reads A at `i·a_rs` and writes `dst` at `i·dst_rs`.
    fn consecutive(m: usize, a_rs: usize, dst_rs: usize) -> Vec<RowTile> {
        (0..m).step_by(MR).map(|r| RowTile { a: r * a_rs, dst: r * dst_rs, rows: MR.min(m - r) }).collect()
    }

    /// `a [m, ·]` times `w [n, k]ᵀ` on the tile, into a copy of `start` (rows `dst_rs` apart).
    fn product(
        a: &[f32],
        a_rs: usize,
        segments: &[Segment],
        w: &[f32],
        (m, n, dst_rs): (usize, usize, usize),
        bias: Option<&[f32]>,
        start: &[f32],
    ) -> Vec<f32> {
        let k: usize = segments.iter().map(|s| s.len).sum();
        let packed = Panels::pack(Mat::transposed(w, k), k, n);
        let mut out = start.to_vec();
        gemm_packed(a, a_rs, segments, &consecutive(m, a_rs, dst_rs), &packed, bias, &mut out, dst_rs);
        out
    }

    /// Products of random matrices match an f64 reference to f32 accumulation accuracy, for row
    /// counts off the 8-row tile and the task size, columns off the 48-column panel, K across
    /// several K blocks, with and without a bias; the elements between `dst`'s rows keep their
    /// values (the panel edges are masked).
    #[test]
    fn products_match_an_f64_reference() {
        if !super::super::available() {
            eprintln!("skipped: this CPU has no AVX-512 F");
            return;
        }
        let mut rng = SplitMix64::new(17);
        for (m, k, n) in [(1, 1, 1), (13, 40, 33), (97, 300, 70), (130, 2 * KC + 5, 300), (25, 7, 400)] {
            let (a, w) = (draw(&mut rng, m * k), draw(&mut rng, n * k));
            let dst_rs = n + 5;
            let (bias, start) = (draw(&mut rng, n), draw(&mut rng, m * dst_rs));
            let whole = [Segment { offset: 0, len: k }];
            let want = reference(&a, k, &whole, &w, m, n);
            for bias in [None, Some(&bias[..])] {
                let got = product(&a, k, &whole, &w, (m, n, dst_rs), bias, &start);
                for (i, (g, s)) in got.iter().zip(&start).enumerate() {
                    let (row, j) = (i / dst_rs, i % dst_rs);
                    if j >= n {
                        assert_eq!(
                            g.to_bits(),
                            s.to_bits(),
                            "{m}x{k}x{n} row {row}: gap element {j} written"
                        );
                        continue;
                    }
                    let (sum, abs) = want[row * n + j];
                    let b = bias.map_or(0.0, |b| f64::from(b[j]));
                    let tol = 1e-6 * (1.0 + abs + b.abs());
                    assert!(
                        (f64::from(*g) - sum - b).abs() <= tol,
                        "{m}x{k}x{n} ({row}, {j}): {g} vs {}",
                        sum + b
                    );
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
        let bias = draw(&mut rng, n);
        let whole = [Segment { offset: 0, len: k }];
        let all = product(&a, k, &whole, &w, (big, n, n), Some(&bias), &vec![0.0; big * n]);
        for m in [1, 2, 7, 8, 9, 97, 299] {
            let part = product(&a[..m * k], k, &whole, &w, (m, n, n), Some(&bias), &vec![0.0; m * n]);
            for (i, (x, y)) in part.iter().zip(&all).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "m {m} element {i}");
            }
        }
    }

    /// Tiles that overlap the one before them are refused before anything is written.
    #[test]
    #[should_panic(expected = "tiles overlap")]
    fn overlapping_tiles_are_refused() {
        let (k, n) = (4, 20);
        let packed = Panels::pack(Mat::transposed(&[0.5; 4 * 20], k), k, n);
        let tiles = [RowTile { a: 0, dst: 0, rows: 2 }, RowTile { a: 0, dst: n + 1, rows: 1 }];
        let whole = [Segment { offset: 0, len: k }];
        gemm_packed(&[1.0; 8], k, &whole, &tiles, &packed, None, &mut [0.0; 3 * 20], n);
    }

    /// B given by rows (`[k, n]` row-major) packs to the same panels as B given by columns (read
    /// in runs of `PACK_K`).
    #[test]
    fn packing_by_rows_equals_packing_by_columns() {
        let mut rng = SplitMix64::new(31);
        let (k, n) = (PACK_K + 37, 70);
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
        let got = product(&a, a_rs, &segments, &w, (m, n, n), None, &vec![0.0; m * n]);
        for (i, (g, (sum, abs))) in got.iter().zip(&want).enumerate() {
            assert!((f64::from(*g) - sum).abs() <= 1e-6 * (1.0 + abs), "element {i}: {g} vs {sum}");
        }
    }
}
