//! Softmax over the last dimension, numerically stable (the row maximum is subtracted first).

use super::math::{exp_f32, max_f32, sum_f32, vectorized};
use super::{produce_rows, read_f32};
use crate::CpuStorage;

/// Replaces `row` by `exp(row - max(row))` and returns the sum of the new values (at least 1
/// for a non-empty row without NaN, since the maximum maps to 1). This is the hot loop of
/// attention, so it runs [`vectorized`].
pub(crate) fn exp_shifted(row: &mut [f32]) -> f32 {
    vectorized(
        #[inline(always)]
        || exp_shifted_portable(row),
    )
}

#[inline(always)]
fn exp_shifted_portable(row: &mut [f32]) -> f32 {
    let max = max_f32(row);
    // A row of -inf (every key masked) has no finite maximum; shifting by 0 keeps it all zeros.
    let max = if max.is_finite() { max } else { 0.0 };
    exp_minus(row, max)
}

/// One row of a tile of scores in an online softmax (attention over key tiles): raises the
/// running maximum `max` to cover this tile, replaces `row` by `exp(row - max)` and returns
/// `(rescale, sum)`: the factor that the sums and outputs of the earlier tiles must be
/// multiplied by (`exp(old max - new max)`, 0 before the first finite score) and the sum of
/// the new values. A row whose scores so far are all -inf (masked) stays all zeros.
pub(crate) fn exp_online(row: &mut [f32], max: &mut f32) -> (f32, f32) {
    vectorized(
        #[inline(always)]
        || {
            let new = max_f32(row).max(*max);
            if !new.is_finite() {
                row.fill(0.0);
                return (1.0, 0.0);
            }
            let rescale = exp_f32(*max - new);
            *max = new;
            (rescale, exp_minus(row, new))
        },
    )
}

/// Replaces `row` by `exp(row - shift)` and returns the sum of the new values.
#[inline(always)]
fn exp_minus(row: &mut [f32], shift: f32) -> f32 {
    // Exponentiate and sum in one pass, eight lanes wide.
    let mut acc = [0f32; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *v = exp_f32(*v - shift);
            *a += *v;
        }
    }
    let tail = chunks.into_remainder();
    tail.iter_mut().for_each(|v| *v = exp_f32(*v - shift));
    acc.iter().sum::<f32>() + sum_f32(tail)
}

/// Writes `exp(row - max(row))` as two bf16 parts, `hi` rounded to nearest and `lo` the
/// rounded remainder (`hi + lo` is within 2^-17 of the f32 value), and returns the sum of the
/// f32 values: attention's weights for bf16 products with V that lose nothing to rounding, in
/// one vectorised pass. The values lie in `[0, 1]`: no NaN or overflow needs care.
pub(crate) fn exp_shifted_bf16(row: &[f32], hi: &mut [half::bf16], lo: &mut [half::bf16]) -> f32 {
    fn round(x: f32) -> (u16, f32) {
        let bits = x.to_bits();
        let top = (bits + 0x7FFF + (bits >> 16 & 1)) >> 16;
        (top as u16, f32::from_bits(top << 16))
    }
    vectorized(
        #[inline(always)]
        || {
            let max = max_f32(row);
            let max = if max.is_finite() { max } else { 0.0 };
            let split = |x: &f32, h: &mut half::bf16, l: &mut half::bf16| {
                let e = exp_f32(x - max);
                let (hb, hv) = round(e);
                *h = half::bf16::from_bits(hb);
                *l = half::bf16::from_bits(round(e - hv).0);
                e
            };
            let mut acc = [0f32; 16];
            let (hi, lo) = (&mut hi[..row.len()], &mut lo[..row.len()]);
            let (mut xs, mut hs, mut ls) =
                (row.chunks_exact(16), hi.chunks_exact_mut(16), lo.chunks_exact_mut(16));
            for ((x, h), l) in (&mut xs).zip(&mut hs).zip(&mut ls) {
                for (((x, h), l), a) in x.iter().zip(h).zip(l).zip(&mut acc) {
                    *a += split(x, h, l);
                }
            }
            let tail = xs.remainder().iter().zip(hs.into_remainder()).zip(ls.into_remainder());
            let tail: f32 = tail.map(|((x, h), l)| split(x, h, l)).sum();
            acc.iter().sum::<f32>() + tail
        },
    )
}

/// Softmax over the last dimension of `x [rows, c]`.
pub(crate) fn softmax(x: &CpuStorage, c: usize) -> CpuStorage {
    let rows = x.len().checked_div(c).unwrap_or(0);
    produce_rows(x.dtype(), rows, c, |r0, out| {
        out.copy_from_slice(&read_f32(x, r0 * c, out.len()));
        for row in out.chunks_exact_mut(c) {
            let inv = 1.0 / exp_shifted(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    })
}
