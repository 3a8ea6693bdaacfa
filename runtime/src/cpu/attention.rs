//! Multi-head scaled dot-product attention, `softmax(scale * Q K^T) V`, per (batch, head).
//!
//! Q is `[B, Lq, H, D]` and K, V are `[B, Lk, H, D]`, so the `[B, L, H*D]` outputs of the
//! projections are used as they are: one head's rows are a strided matrix (row stride `H*D`)
//! that `gemm` reads directly, and the output is written the same way. Work is split into
//! blocks of query rows: each rayon task owns a block of rows of the output (all heads). For
//! each head it walks the keys in tiles of `KEY_TILE` (flash attention's online softmax):
//! one GEMM gives the tile's scores, each row is exponentiated against its running maximum,
//! the rows' earlier sums and outputs are rescaled when that maximum grows, and a second GEMM
//! adds the tile's weights times V to the output; at the end each row is divided by its sum.
//! Only one `[block, KEY_TILE]` tile of scores exists at a time, small enough to stay in L2.
//! A causal mask sets the scores of later keys to `-inf`, so they weigh exactly 0, and a
//! causal block skips the tiles after its last query.
//! Blocks never span two images and their size depends on `Lq` only, so each image's result
//! is the same in any batch.

mod tiles;

use gemm::Parallelism;
use rayon::prelude::*;

use super::matmul::{Dst, Mat, gemm_f32};
use super::softmax::exp_online;
use super::{round_to, widen};
use crate::CpuStorage;

/// Most query rows per task. `gemm` repacks K and V for every block, so taller blocks amortise
/// that better (measured when a block still held the scores of all keys): on a 2-core AVX2
/// machine 128 beat 32 and 64 by 10-40% at L = 1024 and 4096, and with AVX-512 256 beat 128 by
/// 10% at L = 4096 (SD 1.5's UNet, benches/RESULTS.md).
const MAX_BLOCK: usize = 256;
/// Most keys per tile of scores: the tile of a block (`MAX_BLOCK * KEY_TILE` floats, 512 KiB)
/// stays in L2 between its product with Q, its exponentials and its product with V, where the
/// scores of all keys at once (4 MiB at Lk = 4096) went out to L3 and back three times. On a
/// 2-core Ice Lake tiles of 256, 512 and 1024 keys timed alike (SD 1.5's UNet, RESULTS.md).
const KEY_TILE: usize = 512;
/// Fewest query rows per task, to keep the GEMMs from degenerating into dot products.
const MIN_BLOCK: usize = 16;

/// Sizes of one attention, validated by [`crate::Tensor::attention`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttentionGeometry {
    /// Batch.
    pub b: usize,
    /// Query length.
    pub lq: usize,
    /// Key and value length.
    pub lk: usize,
    /// Heads.
    pub h: usize,
    /// Head dimension.
    pub d: usize,
    /// Query `i` sees keys `0..=i` only (CLIP's text transformer); needs `lq == lk`.
    pub causal: bool,
}

/// `softmax(scale * q k^T) v` for every batch and head -> `[b, lq, h, d]`.
pub(crate) fn attention(
    q: &CpuStorage,
    k: &CpuStorage,
    v: &CpuStorage,
    g: AttentionGeometry,
    scale: f32,
) -> CpuStorage {
    if let (CpuStorage::BF16(qb), CpuStorage::BF16(kb), CpuStorage::BF16(vb)) = (q, k, v)
        && tiles::fits(&g)
    {
        return round_to(tiles::attention_tiles(qb, kb, vb, g, scale), q.dtype());
    }
    let (qf, kf, vf) = (widen(q), widen(k), widen(v));
    let out = attention_f32(&qf, &kf, &vf, g, scale, block_rows(g.lq));
    round_to(out, q.dtype())
}

/// Query rows per task: an eighth of one image's queries, within [`MIN_BLOCK`, `MAX_BLOCK`].
/// A block's row count is the `m` of its GEMMs, which changes how `gemm` rounds, so it depends
/// on `Lq` alone: never on the batch or the thread count, so that an image's result does not.
pub(super) fn block_rows(lq: usize) -> usize {
    lq.div_ceil(8).clamp(MIN_BLOCK, MAX_BLOCK)
}

/// The f32 attention with the query block size as a parameter, so tests can vary it.
pub(crate) fn attention_f32(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    g: AttentionGeometry,
    scale: f32,
    block: usize,
) -> Vec<f32> {
    let AttentionGeometry { b, lq, lk, h, d, causal } = g;
    let hd = h * d; // row stride of every operand
    assert_eq!(q.len(), b * lq * hd, "attention_f32: q is not [b, lq, h, d]");
    let mut out = vec![0f32; q.len()]; // [b, lq, h, d]
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(lq * hd).enumerate().for_each(|(bi, ob)| {
        let (kb, vb) = (&k[bi * lk * hd..(bi + 1) * lk * hd], &v[bi * lk * hd..(bi + 1) * lk * hd]);
        ob.par_chunks_mut(block * hd).enumerate().for_each_init(
            || QueryBlock::new(block, lk),
            |scratch, (blk, oc)| {
                let rows = oc.len() / hd;
                let first_query = blk * block;
                // Keys that some query of the block sees: a causal block stops at its last row.
                let visible = if causal { (first_query + rows).min(lk) } else { lk };
                let q0 = (bi * lq + first_query) * hd;
                for head in 0..h {
                    let qh = Mat::rows(&q[q0 + head * d..], hd); // [rows, d]
                    let dst = &mut oc[head * d..]; // [rows, d], row stride hd
                    let (max, sum) = (&mut scratch.max[..rows], &mut scratch.sum[..rows]);
                    max.fill(f32::NEG_INFINITY);
                    sum.fill(0.0);
                    for k0 in (0..visible).step_by(KEY_TILE) {
                        let keys = KEY_TILE.min(visible - k0);
                        let scores = &mut scratch.scores[..rows * keys]; // [rows, keys]
                        let kt = Mat { data: &kb[k0 * hd + head * d..], rs: 1, cs: hd }; // [d, keys]
                        gemm_f32(
                            (rows, keys, d),
                            scores,
                            keys,
                            Dst::Overwrite,
                            qh,
                            kt,
                            scale,
                            Parallelism::None,
                        );
                        for (r, row) in scores.chunks_exact_mut(keys).enumerate() {
                            if causal {
                                // Query first_query + r sees keys up to its own index.
                                row[(first_query + r + 1).saturating_sub(k0).min(keys)..]
                                    .fill(f32::NEG_INFINITY);
                            }
                            let (rescale, tile_sum) = exp_online(row, &mut max[r]);
                            sum[r] = sum[r] * rescale + tile_sum;
                            if k0 > 0 && rescale != 1.0 {
                                dst[r * hd..][..d].iter_mut().for_each(|o| *o *= rescale);
                            }
                        }
                        let vh = Mat::rows(&vb[k0 * hd + head * d..], hd); // [keys, d]
                        let mode = if k0 == 0 { Dst::Overwrite } else { Dst::Accumulate };
                        gemm_f32(
                            (rows, d, keys),
                            dst,
                            hd,
                            mode,
                            Mat::rows(scores, keys),
                            vh,
                            1.0,
                            Parallelism::None,
                        );
                    }
                    for (row, sum) in dst.chunks_mut(hd).zip(sum.iter()) {
                        row[..d].iter_mut().for_each(|o| *o /= sum);
                    }
                }
            },
        );
    });
    out
}

/// One task's scratch: a tile of scores and each query row's running maximum and sum.
struct QueryBlock {
    scores: Vec<f32>, // [block, KEY_TILE]
    max: Vec<f32>,    // [block]
    sum: Vec<f32>,    // [block]
}

impl QueryBlock {
    fn new(block: usize, lk: usize) -> Self {
        let tile = block * KEY_TILE.min(lk);
        QueryBlock { scores: vec![0.0; tile], max: vec![0.0; block], sum: vec![0.0; block] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0 - 2.0).collect()
    }

    /// Causal row `i` equals plain attention of that query over the keys `0..=i` alone, for
    /// any block size.
    #[test]
    fn causal_rows_see_only_earlier_keys() {
        let (h, d, l) = (2, 3, 13);
        let g = AttentionGeometry { b: 2, lq: l, lk: l, h, d, causal: true };
        let (q, k, v) = (values(2 * l * h * d, 4), values(2 * l * h * d, 5), values(2 * l * h * d, 6));
        for block in [1, 4, 13] {
            let got = attention_f32(&q, &k, &v, g, 0.7, block);
            for bi in 0..2 {
                for i in 0..l {
                    let row = |t: &[f32], n: usize| t[(bi * l) * h * d..][..n * h * d].to_vec();
                    let qi = q[(bi * l + i) * h * d..][..h * d].to_vec();
                    let one = AttentionGeometry { b: 1, lq: 1, lk: i + 1, h, d, causal: false };
                    let want = attention_f32(&qi, &row(&k, i + 1), &row(&v, i + 1), one, 0.7, 1);
                    let got_row = &got[(bi * l + i) * h * d..][..h * d];
                    for (a, b) in got_row.iter().zip(&want) {
                        assert!(
                            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                            "block {block}, row {i}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    /// Over several key tiles too (the last partial), causal row `i` equals plain attention
    /// over the keys `0..=i`, for query blocks that end inside a tile and on its edge.
    #[test]
    fn causal_rows_across_key_tiles() {
        let (h, d, l) = (2, 8, 2 * KEY_TILE + 77);
        let g = AttentionGeometry { b: 1, lq: l, lk: l, h, d, causal: true };
        let (q, k, v) = (values(l * h * d, 7), values(l * h * d, 8), values(l * h * d, 9));
        for block in [100, KEY_TILE] {
            let got = attention_f32(&q, &k, &v, g, 0.3, block);
            for i in (0..l).step_by(37).chain([KEY_TILE - 1, KEY_TILE, l - 1]) {
                let qi = &q[i * h * d..][..h * d];
                let one = AttentionGeometry { b: 1, lq: 1, lk: i + 1, h, d, causal: false };
                let want = attention_f32(qi, &k[..(i + 1) * h * d], &v[..(i + 1) * h * d], one, 0.3, 1);
                for (a, b) in got[i * h * d..][..h * d].iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "block {block}, row {i}: {a} vs {b}");
                }
            }
        }
    }

    /// Any query block size, dividing the rows or not, gives the same result.
    #[test]
    fn block_size_does_not_change_the_result() {
        let g = AttentionGeometry { b: 2, lq: 37, lk: 11, h: 3, d: 5, causal: false };
        let q = values(g.b * g.lq * g.h * g.d, 1);
        let k = values(g.b * g.lk * g.h * g.d, 2);
        let v = values(g.b * g.lk * g.h * g.d, 3);
        let whole = attention_f32(&q, &k, &v, g, 0.4, g.lq);
        for block in [1, 5, 16, 36, 64] {
            let got = attention_f32(&q, &k, &v, g, 0.4, block);
            for (i, (a, b)) in got.iter().zip(&whole).enumerate() {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "block {block}, index {i}: {a} vs {b}");
            }
        }
    }
}
