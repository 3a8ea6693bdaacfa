//! Normalisation: group norm (with optional fused SiLU) and layer norm.
//!
//! Group norm follows `torch.nn.GroupNorm` on channels-last data: statistics per (sample, group)
//! over every position and the group's `C / groups` channels, biased variance, then a
//! per-channel affine. Statistics are two-pass in f64 (mean first, then the mean squared
//! deviation), so an activation with a large mean and a small spread keeps its precision,
//! and each pass reads the rows contiguously in parallel chunks.
//! Layer norm follows `torch.nn.LayerNorm` over the last dimension, two-pass per row in f32.

use rayon::prelude::*;

use super::activation::silu_f32;
use super::math::{dot_f32, sum_f32, vectorized};
use super::{ELEMWISE_CHUNK, round_to, widen};
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
    let (xf, gf, bf) = (widen(x), widen(gamma), widen(beta));
    let mut out = vec![0f32; xf.len()];
    let per_sample = l * c;
    if per_sample == 0 {
        return round_to(out, x.dtype());
    }
    let cg = c / groups;
    let count = (l * cg) as f64;
    let rows_per_task = (ELEMWISE_CHUNK / c).max(1);
    for (xs, os) in xf.chunks_exact(per_sample).zip(out.chunks_exact_mut(per_sample)).take(n) {
        // Pass 1: per-group means.
        let sums = channel_sums(xs, c, rows_per_task, None);
        let mean: Vec<f64> = sums.chunks_exact(cg).map(|s| s.iter().sum::<f64>() / count).collect();
        let mean_c: Vec<f64> = (0..c).map(|ch| mean[ch / cg]).collect();
        // Pass 2: per-group biased variances around those means.
        let sq = channel_sums(xs, c, rows_per_task, Some(&mean_c));
        let rstd: Vec<f64> =
            sq.chunks_exact(cg).map(|s| 1.0 / (s.iter().sum::<f64>() / count + eps as f64).sqrt()).collect();
        // Pass 3: out = (x - mean) * rstd * gamma + beta, per channel.
        let shift: Vec<f32> = mean_c.iter().map(|&m| m as f32).collect();
        let scale: Vec<f32> = (0..c).map(|ch| (rstd[ch / cg] * gf[ch] as f64) as f32).collect();
        os.par_chunks_mut(rows_per_task * c).zip(xs.par_chunks(rows_per_task * c)).for_each(|(o, i)| {
            vectorized(
                #[inline(always)]
                || {
                    for (orow, irow) in o.chunks_exact_mut(c).zip(i.chunks_exact(c)) {
                        let per_channel = irow.iter().zip(&shift).zip(&scale).zip(bf.iter());
                        for (o, (((&x, &m), &s), &b)) in orow.iter_mut().zip(per_channel) {
                            let y = (x - m) * s + b;
                            *o = if silu { silu_f32(y) } else { y };
                        }
                    }
                },
            )
        });
    }
    round_to(out, x.dtype())
}

/// Per-channel sums over the rows of `xs [rows, c]` in f64, in parallel: of the values, or with
/// `center`, of their squared deviations from it.
fn channel_sums(xs: &[f32], c: usize, rows_per_task: usize, center: Option<&[f64]>) -> Vec<f64> {
    xs.par_chunks(rows_per_task * c)
        .map(|block| {
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
        .reduce(
            || vec![0f64; c],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

/// Layer norm over the last dimension of `x [rows, c]` with `gamma [c]`, `beta [c]`.
pub(crate) fn layer_norm(x: &CpuStorage, gamma: &CpuStorage, beta: &CpuStorage, c: usize, eps: f32) -> CpuStorage {
    let (xf, gf, bf) = (widen(x), widen(gamma), widen(beta));
    let mut out = vec![0f32; xf.len()];
    if c == 0 {
        return round_to(out, x.dtype());
    }
    let rows_per_task = (ELEMWISE_CHUNK / c).max(1);
    out.par_chunks_mut(rows_per_task * c).zip(xf.par_chunks(rows_per_task * c)).for_each(|(o, i)| {
        for (orow, irow) in o.chunks_exact_mut(c).zip(i.chunks_exact(c)) {
            let mean = sum_f32(irow) / c as f32;
            // Deviations go through the output row, so the variance is a plain vectorised sum.
            orow.iter_mut().zip(irow).for_each(|(o, &v)| *o = v - mean);
            let var = dot_f32(orow, orow) / c as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            for ((o, &g), &b) in orow.iter_mut().zip(gf.iter()).zip(bf.iter()) {
                *o = *o * rstd * g + b;
            }
        }
    });
    round_to(out, x.dtype())
}
