//! Sinusoidal timestep embeddings, as diffusers' `get_timestep_embedding`.
//!
//! For `half = dim / 2` frequencies `f_i = exp(-ln(max_period) * i / (half - shift))`, the
//! embedding of timestep `t` is `[sin(t f_0..), cos(t f_0..)]`, or `[cos.., sin..]` with
//! `flip_sin_to_cos`, zero-padded by one column when `dim` is odd. Like diffusers this
//! computes the frequencies and the products `t * f_i` in f32; the sines and cosines are
//! evaluated in f64 and rounded, which is what an exactly rounded f32 `sin` gives.

use crate::ops::TimestepEmbeddingParams;

/// The `[timesteps.len(), dim]` embedding, in f32.
pub(crate) fn timestep_embedding(timesteps: &[f32], dim: usize, p: TimestepEmbeddingParams) -> Vec<f32> {
    let half = dim / 2;
    let denom = half as f32 - p.downscale_freq_shift;
    let log_period = (p.max_period as f64).ln() as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (-log_period * i as f32 / denom).exp()).collect();
    let mut out = vec![0f32; timesteps.len() * dim];
    if dim == 0 {
        return out;
    }
    for (row, &t) in out.chunks_exact_mut(dim).zip(timesteps) {
        let (first, rest) = row.split_at_mut(half);
        let second = &mut rest[..half];
        let (sin, cos) = if p.flip_sin_to_cos { (second, first) } else { (first, second) };
        for ((s, c), &f) in sin.iter_mut().zip(cos.iter_mut()).zip(&freqs) {
            let arg = (t * f) as f64;
            *s = arg.sin() as f32;
            *c = arg.cos() as f32;
        }
    }
    out
}
