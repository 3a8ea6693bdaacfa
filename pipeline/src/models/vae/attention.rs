//! The mid block's self-attention over every latent position (diffusers' `Attention` as the VAE
//! builds it: one head as wide as the channels, group norm first, residual added back).
//!
//! The head is as wide as the channels (512 in the real VAEs, 16 in the tiny ones). Where the
//! fused attention op has no kernel for that width (CUDA's flash attention covers the UNet's
//! head dims only) it is computed in query blocks as `softmax(scale * q k^T) v` with linear,
//! softmax and matmul, never holding more than [`SCORE_BUDGET`] scores.

use kiln_runtime::Tensor;

use super::super::nn::{GroupNorm, Linear};
use super::super::{Result, Weights};
use super::NORM_EPS;

/// Most attention scores one query block of the unfused path holds (64 Mi elements).
const SCORE_BUDGET: usize = 1 << 26;

/// Single-head attention over the `H*W` positions of `[N, H, W, C]` activations.
#[derive(Clone, Debug)]
pub struct SpatialAttention {
    channels: usize,
    norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl SpatialAttention {
    /// Loads `group_norm`, `to_q`, `to_k`, `to_v` and `to_out.0` under `w` (`mid_block.attentions.0`).
    pub fn load(w: &Weights, groups: usize, channels: usize) -> Result<SpatialAttention> {
        Ok(SpatialAttention {
            channels,
            norm: GroupNorm::load(&w.at("group_norm"), groups, channels, NORM_EPS)?,
            to_q: Linear::load(&w.at("to_q"), channels, channels, true)?,
            to_k: Linear::load(&w.at("to_k"), channels, channels, true)?,
            to_v: Linear::load(&w.at("to_v"), channels, channels, true)?,
            to_out: Linear::load(&w.at("to_out.0"), channels, channels, true)?,
        })
    }

    /// `x [N, H, W, C] -> [N, H, W, C]`: `x + to_out(attention(norm(x)))`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [n, h, w, c] = x.dims_n::<4>("vae attention")?;
        let tokens = self.norm.forward(x, false)?.reshape(&[n, h * w, c])?; // [N, HW, C]
        let head =
            |proj: &Linear| -> Result<Tensor> { Ok(proj.forward(&tokens)?.reshape(&[n, h * w, 1, c])?) };
        let (q, k, v) = (head(&self.to_q)?, head(&self.to_k)?, head(&self.to_v)?); // [N, HW, 1, C]
        let scale = 1.0 / (self.channels as f32).sqrt();
        let mixed = match Tensor::attention(&q, &k, &v, scale) {
            Err(kiln_runtime::Error::Unsupported { .. }) => {
                unfused_attention(&q, &k, &v, scale, SCORE_BUDGET)?
            }
            fused => fused?,
        }
        .reshape(&[n, h * w, c])?;
        let out = self.to_out.forward(&mixed)?.reshape(&[n, h, w, c])?;
        Ok(x.add(&out)?)
    }
}

/// One-head attention `q, k, v [N, L, 1, C] -> [N, L, 1, C]` without the fused op: per batch
/// entry and block of queries, scores `[rows, L]` by a linear against `k` (which multiplies by
/// `k^T`), softmax, then a matmul with `v`; blocks hold at most `budget` scores.
fn unfused_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, budget: usize) -> Result<Tensor> {
    let [n, l, _, c] = q.dims_n::<4>("vae attention")?;
    let rows = (budget / l.max(1)).clamp(1, l.max(1));
    let mut outputs = Vec::with_capacity(n);
    for b in 0..n {
        let entry = |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(0, b, 1)?.reshape(&[l, c])?) };
        let (qb, kb, vb) = (entry(q)?, entry(k)?, entry(v)?); // [L, C]
        let mut blocks = Vec::with_capacity(l.div_ceil(rows));
        for start in (0..l).step_by(rows) {
            let block = qb.narrow(0, start, rows.min(l - start))?; // [rows, C]
            let scores = block.linear(&kb, None)?.affine(scale, 0.0)?.softmax()?; // [rows, L]
            blocks.push(scores.matmul(&vb)?); // [rows, C]
        }
        outputs.push(Tensor::concat(&blocks.iter().collect::<Vec<_>>(), 0)?);
    }
    Ok(Tensor::concat(&outputs.iter().collect::<Vec<_>>(), 0)?.reshape(&[n, l, 1, c])?)
}

#[cfg(test)]
mod tests {
    use kiln_runtime::{DType, Device, Tensor};

    use super::unfused_attention;

    /// The unfused path (used where the fused op has no kernel) agrees with the fused op, whose
    /// own tests hold it to torch, at the VAE's shapes: one head, wide, several batch entries.
    #[test]
    fn unfused_attention_matches_the_fused_op() {
        let shape = [2, 37, 1, 24];
        let t = |seed: f32| {
            let n: usize = shape.iter().product();
            let values = (0..n).map(|i| ((i as f32 + seed) * 0.618).sin() * 2.0).collect();
            Tensor::from_f32(values, &shape, DType::F32, Device::Cpu).unwrap()
        };
        let (q, k, v) = (t(1.0), t(2.0), t(3.0));
        let scale = 1.0 / 24f32.sqrt();
        let fused = Tensor::attention(&q, &k, &v, scale).unwrap().to_vec_f32().unwrap();
        for budget in [37 * 37, 37 * 5] {
            // one block of queries, then blocks of 5 (the last one shorter)
            let unfused = unfused_attention(&q, &k, &v, scale, budget).unwrap().to_vec_f32().unwrap();
            let err = fused.iter().zip(&unfused).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err < 1e-5, "budget {budget}: max difference {err}");
        }
    }
}
