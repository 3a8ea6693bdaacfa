//! Attention of bf16 queries, keys and values on AMX tiles.
//!
//! Per image and head, K (as the columns of B for `Q Kᵀ`) and V (as the rows of B for `P V`)
//! are packed once; then blocks of query rows run, each with two tile products and the softmax
//! between them in f32. Scores are scaled by the first product and exponentiated
//! (`exp(s - max)`); the f32 weights enter the second product as two bf16 parts, rounded and
//! remainder (K doubled: `[hi | lo] · [V; V]`), so the weights lose only what f32 would (PyTorch's
//! bf16 attention on the CPU rounds them to bf16 instead), and each output row is divided by the
//! sum of its weights.
//! Head dimensions and key counts off the 32 grid are zero-padded in the packed copies, so
//! padding adds exact zeros. Every query row's result depends on that row and the image's keys
//! and values only.

use half::bf16;
use rayon::prelude::*;

use super::AttentionGeometry;
use crate::cpu::amx::{ASegment, PackedB, gemm_bf16};
use crate::cpu::matmul::Dst;
use crate::cpu::softmax::exp_shifted_bf16;

/// Whether the tiles run this attention: AMX present and no causal mask (CLIP's text
/// encoder, tiny, stays on the f32 path).
pub(super) fn fits(g: &AttentionGeometry) -> bool {
    !g.causal && crate::cpu::amx::enabled()
}

/// `softmax(scale · q kᵀ) v` for bf16 `q [b, lq, h, d]`, `k, v [b, lk, h, d]` -> f32
/// `[b, lq, h, d]`. Per image, every head's K and V are packed (in parallel), then each block of
/// query rows (see `block_rows`) is one rayon task running all heads on its thread, with one
/// score buffer (`block x Lk` f32) and one weight buffer.
pub(super) fn attention_tiles(
    q: &[bf16],
    k: &[bf16],
    v: &[bf16],
    g: AttentionGeometry,
    scale: f32,
) -> Vec<f32> {
    let AttentionGeometry { b, lq, lk, h, d, .. } = g;
    let hd = h * d;
    let mut out = vec![0f32; b * lq * hd];
    if out.is_empty() || lk == 0 {
        return out;
    }
    let (dp, lkp) = (d.div_ceil(32) * 32, lk.div_ceil(32) * 32); // padded head dim and key count
    let block = super::block_rows(lq);
    let zeros = vec![bf16::ZERO; d];
    for (bi, ob) in out.chunks_mut(lq * hd).enumerate() {
        let (kb, vb) = (&k[bi * lk * hd..][..lk * hd], &v[bi * lk * hd..][..lk * hd]);
        let packed: Vec<(PackedB, PackedB)> = (0..h)
            .into_par_iter()
            .map(|head| {
                let kt = PackedB::from_columns(lk, d, |j| &kb[j * hd + head * d..][..d]); // [d, lk]
                // [V; V] with each half padded to `lkp` rows: [2 lkp, d].
                let vh = PackedB::from_rows(2 * lkp, d, |j| match j % lkp {
                    j if j < lk => &vb[j * hd + head * d..][..d],
                    _ => &zeros[..],
                });
                (kt, vh)
            })
            .collect();
        let qb = &q[bi * lq * hd..][..lq * hd];
        ob.par_chunks_mut(block * hd).enumerate().for_each_init(
            || (vec![bf16::ZERO; block * dp], vec![0f32; block * lk], vec![bf16::ZERO; block * 2 * lkp]),
            |(qp, scores, weights), (blk, oc)| {
                let rows = oc.len() / hd;
                let (qp, scores) = (&mut qp[..rows * dp], &mut scores[..rows * lk]);
                let weights = &mut weights[..rows * 2 * lkp]; // [rows, hi (lkp) | lo (lkp)]
                for (head, (kt, vh)) in packed.iter().enumerate() {
                    // This head's queries, zero-padded to `dp` columns.
                    for (r, dst) in qp.chunks_exact_mut(dp).enumerate() {
                        dst[..d].copy_from_slice(&qb[(blk * block + r) * hd + head * d..][..d]);
                    }
                    let q_steps = [ASegment { offset: 0, steps: dp / 32 }];
                    gemm_bf16(rows, qp, dp, &q_steps, kt, scores, lk, Dst::Overwrite, scale, None, false);
                    let sums: Vec<f32> = scores
                        .chunks_exact(lk)
                        .zip(weights.chunks_exact_mut(2 * lkp))
                        .map(|(s, w)| {
                            let (hi, lo) = w.split_at_mut(lkp);
                            exp_shifted_bf16(s, hi, lo)
                        })
                        .collect();
                    let dst = &mut oc[head * d..];
                    let p_steps = [ASegment { offset: 0, steps: 2 * lkp / 32 }];
                    gemm_bf16(
                        rows,
                        weights,
                        2 * lkp,
                        &p_steps,
                        vh,
                        dst,
                        hd,
                        Dst::Overwrite,
                        1.0,
                        None,
                        false,
                    );
                    for (row, sum) in dst.chunks_mut(hd).zip(sums) {
                        let inv = 1.0 / sum;
                        row[..d].iter_mut().for_each(|o| *o *= inv);
                    }
                }
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;

    fn draw(rng: &mut SplitMix64, len: usize) -> Vec<bf16> {
        (0..len).map(|_| bf16::from_f32(rng.unit_variance())).collect()
    }

    /// f64 attention of the same bf16 inputs.
    fn reference(q: &[bf16], k: &[bf16], v: &[bf16], g: AttentionGeometry, scale: f64) -> Vec<f64> {
        let AttentionGeometry { b, lq, lk, h, d, .. } = g;
        let at = |t: &[bf16], bi: usize, l: usize, i: usize, head: usize, c: usize| {
            f64::from(t[((bi * l + i) * h + head) * d + c].to_f32())
        };
        let mut out = vec![0f64; b * lq * h * d];
        for bi in 0..b {
            for head in 0..h {
                for i in 0..lq {
                    let s: Vec<f64> = (0..lk)
                        .map(|j| {
                            scale
                                * (0..d)
                                    .map(|c| at(q, bi, lq, i, head, c) * at(k, bi, lk, j, head, c))
                                    .sum::<f64>()
                        })
                        .collect();
                    let max = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..d {
                        let o: f64 = (0..lk).map(|j| e[j] * at(v, bi, lk, j, head, c)).sum();
                        out[((bi * lq + i) * h + head) * d + c] = o / sum;
                    }
                }
            }
        }
        out
    }

    /// Random attentions, head dims and key counts on and off the 32 grid, more queries than
    /// a block: within f32 accumulation error of an f64 reference of the same bf16 inputs.
    #[test]
    fn matches_an_f64_reference() {
        if !fits(&AttentionGeometry { b: 1, lq: 1, lk: 1, h: 1, d: 1, causal: false }) {
            eprintln!("skipped: this CPU has no AMX-BF16 (or KILN_CPU_AMX=0)");
            return;
        }
        let mut rng = SplitMix64::new(3);
        for (b, lq, lk, h, d) in [(2, 300, 77, 2, 40), (1, 64, 64, 3, 64), (1, 5, 33, 1, 80)] {
            let g = AttentionGeometry { b, lq, lk, h, d, causal: false };
            let (q, k, v) = (
                draw(&mut rng, b * lq * h * d),
                draw(&mut rng, b * lk * h * d),
                draw(&mut rng, b * lk * h * d),
            );
            let scale = 1.0 / (d as f32).sqrt();
            let got = attention_tiles(&q, &k, &v, g, scale);
            let want = reference(&q, &k, &v, g, f64::from(scale));
            for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                assert!((f64::from(*x) - y).abs() <= 2e-5, "{b}x{lq}x{lk}x{h}x{d} element {i}: {x} vs {y}");
            }
        }
    }

    /// A query row's bits do not depend on how many queries or images share the call.
    #[test]
    fn a_rows_result_does_not_depend_on_the_batch() {
        if !fits(&AttentionGeometry { b: 1, lq: 1, lk: 1, h: 1, d: 1, causal: false }) {
            eprintln!("skipped: this CPU has no AMX-BF16 (or KILN_CPU_AMX=0)");
            return;
        }
        let mut rng = SplitMix64::new(5);
        let (lq, lk, h, d) = (300, 50, 2, 40);
        let (q, k, v) =
            (draw(&mut rng, 2 * lq * h * d), draw(&mut rng, 2 * lk * h * d), draw(&mut rng, 2 * lk * h * d));
        let both = attention_tiles(&q, &k, &v, AttentionGeometry { b: 2, lq, lk, h, d, causal: false }, 0.3);
        for rows in [1, 7, 256, 299] {
            let g = AttentionGeometry { b: 1, lq: rows, lk, h, d, causal: false };
            let (k1, v1) = (&k[lk * h * d..], &v[lk * h * d..]);
            let one = attention_tiles(&q[lq * h * d..][..rows * h * d], k1, v1, g, 0.3);
            for (i, (x, y)) in one.iter().zip(&both[lq * h * d..]).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "{rows} rows, element {i}");
            }
        }
    }
}
