//! Normalisation: group norm (with optional fused SiLU) and layer norm.
//!
//! Group norm follows `torch.nn.GroupNorm` on channels-last data: statistics per (sample, group)
//! over every position and the group's `C / groups` channels, biased variance, then a
//! per-channel affine. Statistics are two-pass in f64 (mean first, then the mean squared
//! deviation), so an activation with a large mean and a small spread keeps its precision,
//! and each pass reads the rows contiguously in parallel blocks, adding the blocks' sums in a
//! fixed order (so a sample's result does not depend on the batch or the threads).
//! Layer norm follows `torch.nn.LayerNorm` over the last dimension, two-pass per row in f32.

use rayon::prelude::*;

use super::activation::silu_f32;
use super::math::{dot_f32, sum_f32, vectorized};
use super::{produce_rows, read_f32, rows_per_task, widen};
use crate::CpuStorage;

/// Group norm of `x [n, l, c]` with `gamma [c]`, `beta [c]`, optionally followed by SiLU.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm(
    x: &CpuStorage,
    gamma: &CpuStorage,
    beta: &CpuStorage,
    (n, l, c): (usize, usize, usize),
    groups: usize,
    eps: f32,
    silu: bool,
) -> CpuStorage {
    let (gf, bf) = (widen(gamma), widen(beta));
    if l * c == 0 {
        return produce_rows(x.dtype(), n * l, c, |_, _| {});
    }
    let cg = c / groups;
    let count = (l * cg) as f64;
    // Per sample, per channel: the group mean to subtract and rstd * gamma to multiply by.
    let mut shift = vec![0f32; n * c]; // [n, c]
    let mut scale = vec![0f32; n * c]; // [n, c]
    for s in 0..n {
        // Pass 1: per-group means.
        let sums = channel_sums(x, (s * l, l, c), None);
        let mean: Vec<f64> = sums.chunks_exact(cg).map(|g| g.iter().sum::<f64>() / count).collect();
        let mean_c: Vec<f64> = (0..c).map(|ch| mean[ch / cg]).collect();
        // Pass 2: per-group biased variances around those means.
        let sq = channel_sums(x, (s * l, l, c), Some(&mean_c));
        let rstd: Vec<f64> =
            sq.chunks_exact(cg).map(|g| 1.0 / (g.iter().sum::<f64>() / count + eps as f64).sqrt()).collect();
        for ch in 0..c {
            shift[s * c + ch] = mean_c[ch] as f32;
            scale[s * c + ch] = (rstd[ch / cg] * gf[ch] as f64) as f32;
        }
    }
    // Pass 3: out = (x - mean) * rstd * gamma + beta, per channel, then SiLU.
    produce_rows(x.dtype(), n * l, c, |r0, out| {
        let xs = read_f32(x, r0 * c, out.len());
        vectorized(
            #[inline(always)]
            || {
                for (r, (orow, irow)) in out.chunks_exact_mut(c).zip(xs.chunks_exact(c)).enumerate() {
                    let s = (r0 + r) / l;
                    let (shift, scale) = (&shift[s * c..(s + 1) * c], &scale[s * c..(s + 1) * c]);
                    let per_channel = irow.iter().zip(shift).zip(scale).zip(bf.iter());
                    for (o, (((&x, &m), &k), &b)) in orow.iter_mut().zip(per_channel) {
                        let y = (x - m) * k + b;
                        *o = if silu { silu_f32(y) } else { y };
                    }
                }
            },
        )
    })
}

/// Per-channel sums over rows `first..first + rows` of `x [.., c]` in f64, in parallel: of the
/// values, or with `center`, of their squared deviations from it.
///
/// The rows are cut into blocks counted from `first` (one sample's first row) whose size
/// depends on `c` only, and the blocks' partial sums are added in block order. rayon's
/// `reduce` would add them in a tree shaped by work stealing, which can round differently from
/// run to run; this order depends on nothing but the sample, so a sample's statistics are the
/// same in any batch and on any thread count.
fn channel_sums(x: &CpuStorage, (first, rows, c): (usize, usize, usize), center: Option<&[f64]>) -> Vec<f64> {
    let per_task = rows_per_task(c);
    let partials: Vec<Vec<f64>> = (0..rows.div_ceil(per_task))
        .into_par_iter()
        .map(|t| {
            let (r0, r1) = (first + t * per_task, (first + (t + 1) * per_task).min(first + rows));
            let block = read_f32(x, r0 * c, (r1 - r0) * c);
            let mut acc = vec![0f64; c];
            vectorized(
                #[inline(always)]
                || {
                    for row in block.chunks_exact(c) {
                        match center {
                            None => acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64),
                            Some(m) => acc.iter_mut().zip(row).zip(m).for_each(|((a, &v), &m)| {
                                let d = v as f64 - m;
                                *a += d * d;
                            }),
                        }
                    }
                },
            );
            acc
        })
        .collect();
    let mut sums = vec![0f64; c];
    for partial in &partials {
        sums.iter_mut().zip(partial).for_each(|(s, p)| *s += p);
    }
    sums
}

/// Layer norm over the last dimension of `x [rows, c]` with `gamma [c]`, `beta [c]`.
pub(crate) fn layer_norm(
    x: &CpuStorage,
    gamma: &CpuStorage,
    beta: &CpuStorage,
    c: usize,
    eps: f32,
) -> CpuStorage {
    let (gf, bf) = (widen(gamma), widen(beta));
    let rows = x.len().checked_div(c).unwrap_or(0);
    produce_rows(x.dtype(), rows, c, |r0, out| {
        let xs = read_f32(x, r0 * c, out.len());
        for (orow, irow) in out.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
            let mean = sum_f32(irow) / c as f32;
            // Deviations go through the output row, so the variance is a plain vectorised sum.
            orow.iter_mut().zip(irow).for_each(|(o, &v)| *o = v - mean);
            let var = dot_f32(orow, orow) / c as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            for ((o, &g), &b) in orow.iter_mut().zip(gf.iter()).zip(bf.iter()) {
                *o = *o * rstd * g + b;
            }
        }
    })
}
