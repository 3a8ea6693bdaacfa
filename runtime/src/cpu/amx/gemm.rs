//! `dst[m, n] (+)= scale * A[m, K] * B[K, n]` with bf16 operands on AMX tiles, f32 results.
//!
//! B is packed once per product into 32-column panels of pair-interleaved tiles ([`PackedB`]).
//! A is read in place: each 32-row block's K steps come from one or more [`ASegment`]s of its
//! rows, so a linear layer reads its input rows and a stride-1 convolution reads the padded
//! image at each tap's offset (an implicit GEMM, no im2col). Rows are split into chunks, one
//! rayon task each; a task walks 32-column panels and, per panel, its 32-row blocks, so the
//! panel and the chunk's rows stay in cache.

use half::bf16;
use rayon::prelude::*;

use super::tiles::Tiles;
use crate::cpu::matmul::Dst;

/// Bytes of one packed K step of a panel: two 16x16 tiles of bf16 pairs.
const STEP_BYTES: usize = 2048;

/// B packed for [`gemm_bf16`]: for panel `p` (columns `32p..32p+32`) and K step `s` (rows
/// `32s..32s+32`), two tiles (columns `+0..16`, `+16..32`) whose row `r` holds, for each of
/// the 16 columns, the pair `B[32s + 2r, j], B[32s + 2r + 1, j]`. Columns past `n` are zero.
pub(crate) struct PackedB {
    /// bf16 pairs, low half the even K index.
    data: Vec<u32>,
    n: usize,
    steps: usize,
}

/// u32 words in one packed K step of a panel.
const STEP_WORDS: usize = STEP_BYTES / 4;

impl PackedB {
    /// Packs `B[k, n]` given by its columns: `column(j)` is `B[.., j]`, `k` contiguous bf16
    /// (a PyTorch-layout weight row `[n, k]`). K is padded with zeros to a multiple of 32.
    pub fn from_columns<'a>(n: usize, k: usize, column: impl Fn(usize) -> &'a [bf16] + Sync) -> PackedB {
        let (steps, panels) = (k.div_ceil(32), n.div_ceil(32));
        let mut data = vec![0u32; panels * steps * STEP_WORDS];
        data.par_chunks_mut(steps * STEP_WORDS).enumerate().for_each(|(p, panel)| {
            let cols: Vec<&[bf16]> = (32 * p..n.min(32 * p + 32)).map(&column).collect();
            for (jj, col) in cols.iter().enumerate() {
                assert_eq!(col.len(), k, "PackedB: column {} is not {k} long", 32 * p + jj);
            }
            // Tile (s, t) row r, word j: the pair at K 32s + 2r of column 32p + 16t + j; a
            // 16x16 transpose of words per tile, reading 64 contiguous bytes of 16 columns.
            for (s, step) in panel.chunks_exact_mut(STEP_WORDS).enumerate() {
                for (t, tile) in step.chunks_exact_mut(256).enumerate() {
                    for (j, col) in cols.iter().skip(16 * t).take(16).enumerate() {
                        let mut padded = [bf16::ZERO; 32]; // the last step's K, zero-padded
                        let chunk = match col.get(32 * s..32 * s + 32) {
                            Some(chunk) => chunk,
                            None => {
                                padded[..k - 32 * s].copy_from_slice(&col[32 * s..]);
                                &padded[..]
                            }
                        };
                        for (r, pair) in chunk.chunks_exact(2).enumerate() {
                            tile[r * 16 + j] =
                                u32::from(pair[0].to_bits()) | u32::from(pair[1].to_bits()) << 16;
                        }
                    }
                }
            }
        });
        PackedB { data, n, steps }
    }

    /// Packs `B[k, n]` given by its rows: `row(i)` is `B[i, ..]`, `n` contiguous bf16 (a
    /// head's slice of a value row in attention). K is padded with zeros to a multiple of 32.
    pub fn from_rows<'a>(k: usize, n: usize, row: impl Fn(usize) -> &'a [bf16] + Sync) -> PackedB {
        let (steps, panels) = (k.div_ceil(32), n.div_ceil(32));
        let mut data = vec![0u32; panels * steps * STEP_WORDS];
        data.par_chunks_mut(steps * STEP_WORDS).enumerate().for_each(|(p, panel)| {
            let cols = 32 * p..n.min(32 * p + 32);
            for (s, step) in panel.chunks_exact_mut(STEP_WORDS).enumerate() {
                for r in 0..16 {
                    let kk = 32 * s + 2 * r;
                    let (even, odd) = (row_or_none(&row, kk, k), row_or_none(&row, kk + 1, k));
                    for (jj, j) in cols.clone().enumerate() {
                        let lo = even.map_or(0, |e| u32::from(e[j].to_bits()));
                        let hi = odd.map_or(0, |o| u32::from(o[j].to_bits()));
                        step[(jj / 16) * 256 + r * 16 + jj % 16] = lo | hi << 16;
                    }
                }
            }
        });
        PackedB { data, n, steps }
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// K, padded to a multiple of 32.
    pub fn k(&self) -> usize {
        self.steps * 32
    }

    fn panel(&self, p: usize) -> &[u32] {
        &self.data[p * self.steps * STEP_WORDS..][..self.steps * STEP_WORDS]
    }
}

/// Row `i` of B through `row`, or `None` past `k` (zero padding).
fn row_or_none<'a>(row: &impl Fn(usize) -> &'a [bf16], i: usize, k: usize) -> Option<&'a [bf16]> {
    (i < k).then(|| row(i))
}

/// A run of A's K steps: for row `i`, K elements `32s..32s+32` of the run are
/// `a[i * a_rs + offset + 32s..][..32]`, `s < steps`. A product's runs, in order, cover its K.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ASegment {
    pub offset: usize,
    pub steps: usize,
}

/// `dst[i, j] (+)= scale * sum_k A[i, k] B[k, j] (+ bias[j])` for `i < m`, with A's rows `a_rs`
/// elements apart in `a` and read through `segments`, B packed, `dst` row-major with row stride
/// `dst_rs`. Each row's result depends on that row, B and the segments only. With `parallel`,
/// chunks of rows run as rayon tasks; without, on the caller's thread (inside a rayon task).
///
/// # Panics
/// If the segments do not cover B's K, or `dst` is too short.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_bf16(
    m: usize,
    a: &[bf16],
    a_rs: usize,
    segments: &[ASegment],
    b: &PackedB,
    dst: &mut [f32],
    dst_rs: usize,
    mode: Dst,
    scale: f32,
    bias: Option<&[f32]>,
    parallel: bool,
) {
    let n = b.n();
    assert!(super::enabled(), "gemm_bf16 without AMX");
    assert_eq!(
        segments.iter().map(|s| s.steps * 32).sum::<usize>(),
        b.k(),
        "gemm_bf16: segments do not cover K"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * dst_rs + n, "gemm_bf16: dst too short");
    assert!(bias.is_none_or(|b| b.len() == n), "gemm_bf16: bias is not {n} long");
    // Every 32-row block reads 32 whole rows: past `m`, the rows must still lie inside `a`.
    // When they do not, the last rows (and everything their segments reach) are copied into
    // a zero-padded buffer and multiplied from there.
    let reach = segments.iter().map(|s| s.offset + s.steps * 32).max().unwrap_or(0);
    let rows_padded = m.div_ceil(32) * 32;
    let need = (rows_padded - 1) * a_rs + reach;
    if need > a.len() {
        let full = if a.len() >= reach { (a.len() - reach) / a_rs.max(1) + 1 } else { 0 };
        let full = full.min(m) / 32 * 32; // whole blocks that fit where they are
        if full > 0 {
            gemm_bf16(full, a, a_rs, segments, b, dst, dst_rs, mode, scale, bias, parallel);
        }
        let start = full * a_rs;
        let mut tail = vec![bf16::ZERO; need - start];
        let have = a.len().saturating_sub(start).min(tail.len());
        tail[..have].copy_from_slice(&a[start..start + have]);
        let rest = &mut dst[full * dst_rs..];
        return gemm_bf16(m - full, &tail, a_rs, segments, b, rest, dst_rs, mode, scale, bias, parallel);
    }
    let threads = rayon::current_num_threads();
    let chunk_rows = (m.div_ceil(4 * threads).div_ceil(32) * 32).clamp(32, 128);
    let dst = &mut dst[..(m - 1) * dst_rs + n];
    let run = |(ci, out): (usize, &mut [f32])| {
        let a_bytes = a.as_ptr() as *const u8;
        let row0 = ci * chunk_rows;
        let rows = chunk_rows.min(m - row0);
        let mut c = [0f32; 32 * 32];
        let zeros = [0f32; 32];
        // SAFETY: `gemm_bf16` asserted that AMX is enabled.
        let mut tiles = unsafe { Tiles::load() };
        for p in 0..n.div_ceil(32) {
            let panel = b.panel(p).as_ptr() as *const u8;
            let cols = 32.min(n - 32 * p);
            for blk in (0..rows).step_by(32) {
                tiles.zero();
                let row = row0 + blk;
                let mut step = 0;
                for seg in segments {
                    for s in 0..seg.steps {
                        let at = row * a_rs + seg.offset + 32 * s;
                        // SAFETY: rows `row..row + 32` of every segment lie inside `a` (the
                        // `need` check above); the panel holds `steps` K steps of 2048 bytes.
                        unsafe {
                            tiles.step(
                                a_bytes.add(2 * at),
                                a_bytes.add(2 * (at + 16 * a_rs)),
                                2 * a_rs,
                                panel.add(step * STEP_BYTES),
                            );
                        }
                        step += 1;
                    }
                }
                tiles.store(&mut c);
                let bias = bias.map_or(&zeros[..cols], |b| &b[32 * p..][..cols]);
                for (r, c_row) in c.chunks_exact(32).take(32.min(rows - blk)).enumerate() {
                    let d = &mut out[(blk + r) * dst_rs + 32 * p..][..cols];
                    let terms = d.iter_mut().zip(c_row).zip(bias);
                    match mode {
                        Dst::Overwrite => terms.for_each(|((d, v), b)| *d = scale * v + b),
                        Dst::Accumulate => terms.for_each(|((d, v), b)| *d += scale * v + b),
                    }
                }
            }
        }
    };
    if parallel {
        dst.par_chunks_mut(chunk_rows * dst_rs).enumerate().for_each(run);
    } else {
        dst.chunks_mut(chunk_rows * dst_rs).enumerate().for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;

    fn draw(rng: &mut SplitMix64, len: usize) -> Vec<bf16> {
        (0..len).map(|_| bf16::from_f32(rng.unit_variance())).collect()
    }

    /// `a [m, k]` times `w [n, k]ᵀ` in f64, with the sum of |products| for the tolerance.
    fn reference(a: &[bf16], w: &[bf16], (m, k, n): (usize, usize, usize)) -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                let (mut sum, mut abs) = (0f64, 0f64);
                for l in 0..k {
                    let p = f64::from(a[i * k + l].to_f32()) * f64::from(w[j * k + l].to_f32());
                    sum += p;
                    abs += p.abs();
                }
                out.push((sum, abs));
            }
        }
        out
    }

    fn product(
        a: &[bf16],
        w: &[bf16],
        (m, k, n): (usize, usize, usize),
        start: &[f32],
        mode: Dst,
        scale: f32,
    ) -> Vec<f32> {
        let packed = PackedB::from_columns(n, k, |j| &w[j * k..(j + 1) * k]);
        let mut out = start.to_vec();
        gemm_bf16(
            m,
            a,
            k,
            &[ASegment { offset: 0, steps: k / 32 }],
            &packed,
            &mut out,
            n,
            mode,
            scale,
            None,
            true,
        );
        out
    }

    /// Products of random bf16 matrices match an f64 reference to f32 accumulation accuracy,
    /// for row and column counts off the 32 grid, both modes and a scale.
    #[test]
    fn products_match_an_f64_reference() {
        if !super::super::enabled() {
            eprintln!("skipped: this CPU has no AMX-BF16 (or KILN_CPU_AMX=0)");
            return;
        }
        let mut rng = SplitMix64::new(7);
        for (m, k, n) in [(1, 32, 1), (17, 64, 40), (33, 96, 16), (70, 320, 77), (130, 640, 33)] {
            let (a, w) = (draw(&mut rng, m * k), draw(&mut rng, n * k));
            let start: Vec<f32> = (0..m * n).map(|_| rng.unit_variance()).collect();
            let want = reference(&a, &w, (m, k, n));
            for (mode, scale) in [(Dst::Overwrite, 1.0), (Dst::Accumulate, 0.375)] {
                let got = product(&a, &w, (m, k, n), &start, mode, scale);
                for (i, (g, (sum, abs))) in got.iter().zip(&want).enumerate() {
                    let base = if mode == Dst::Accumulate { f64::from(start[i]) } else { 0.0 };
                    let expect = base + f64::from(scale) * sum;
                    let tol = 1e-6 * (1.0 + f64::from(scale) * abs + base.abs());
                    assert!((f64::from(*g) - expect).abs() <= tol, "{m}x{k}x{n} {i}: {g} vs {expect}");
                }
            }
        }
    }

    /// A row's bits do not depend on how many rows share the product, nor on whether its
    /// block is read in place or from the zero-padded tail copy.
    #[test]
    fn a_rows_result_does_not_depend_on_the_row_count() {
        if !super::super::enabled() {
            eprintln!("skipped: this CPU has no AMX-BF16 (or KILN_CPU_AMX=0)");
            return;
        }
        let mut rng = SplitMix64::new(11);
        let (k, n, big) = (192, 50, 300);
        let (a, w) = (draw(&mut rng, big * k), draw(&mut rng, n * k));
        let whole = product(&a, &w, (big, k, n), &vec![0.0; big * n], Dst::Overwrite, 1.0);
        for m in [1, 2, 31, 32, 33, 64, 129, 299] {
            let part = product(&a[..m * k], &w, (m, k, n), &vec![0.0; m * n], Dst::Overwrite, 1.0);
            for (i, (x, y)) in part.iter().zip(&whole).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "m {m} element {i}");
            }
        }
    }

    /// Segments read A at their offsets: two runs over shifted columns of a wider A equal one
    /// product over those columns gathered.
    #[test]
    fn segments_read_a_at_their_offsets() {
        if !super::super::enabled() {
            eprintln!("skipped: this CPU has no AMX-BF16 (or KILN_CPU_AMX=0)");
            return;
        }
        let mut rng = SplitMix64::new(13);
        let (m, n, a_rs) = (45, 24, 160);
        let a = draw(&mut rng, m * a_rs + 64);
        let segments = [ASegment { offset: 96, steps: 2 }, ASegment { offset: 0, steps: 1 }];
        let gathered: Vec<bf16> = (0..m)
            .flat_map(|i| {
                let row = &a[i * a_rs..];
                row[96..160].iter().chain(&row[..32]).copied().collect::<Vec<_>>()
            })
            .collect();
        let w = draw(&mut rng, n * 96);
        let packed = PackedB::from_columns(n, 96, |j| &w[j * 96..(j + 1) * 96]);
        let mut got = vec![0f32; m * n];
        gemm_bf16(m, &a, a_rs, &segments, &packed, &mut got, n, Dst::Overwrite, 1.0, None, true);
        let want = product(&gathered, &w, (m, 96, n), &vec![0.0; m * n], Dst::Overwrite, 1.0);
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "element {i}");
        }
    }
}
