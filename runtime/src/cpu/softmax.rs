//! Softmax over the last dimension, numerically stable (the row maximum is subtracted first).

use rayon::prelude::*;

use super::{ELEMWISE_CHUNK, narrow, widen};
use crate::CpuStorage;

/// Replaces `row` by `exp(row - max(row))` and returns the sum of the new values (at least 1
/// for a non-empty row without NaN, since the maximum maps to 1).
pub(crate) fn exp_shifted(row: &mut [f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // A row of -inf (every key masked) has no finite maximum; shifting by 0 keeps it all zeros.
    let max = if max.is_finite() { max } else { 0.0 };
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

/// Softmax over the last dimension of `x [rows, c]`.
pub(crate) fn softmax(x: &CpuStorage, c: usize) -> CpuStorage {
    let mut out = widen(x).into_owned();
    if c > 0 {
        let rows_per_task = (ELEMWISE_CHUNK / c).max(1);
        out.par_chunks_mut(rows_per_task * c).for_each(|block| {
            for row in block.chunks_exact_mut(c) {
                let inv = 1.0 / exp_shifted(row);
                row.iter_mut().for_each(|v| *v *= inv);
            }
        });
    }
    narrow(out, x.dtype())
}
