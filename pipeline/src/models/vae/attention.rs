//! The mid block's self-attention over every latent position (diffusers' `Attention` as the VAE
//! builds it: one head as wide as the channels, group norm first, residual added back).
//!
//! The head is as wide as the channels (512 in the real VAEs, 16 in the tiny ones); the runtime's
//! attention op takes any head width (on CUDA, widths without a flash kernel go through its
//! chunked cuBLASLt path).

use kiln_runtime::Tensor;

use super::super::nn::{GroupNorm, Linear};
use super::super::{Result, Weights};
use super::NORM_EPS;

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
        let mixed = Tensor::attention(&q, &k, &v, scale)?.reshape(&[n, h * w, c])?;
        let out = self.to_out.forward(&mixed)?.reshape(&[n, h, w, c])?;
        Ok(x.add(&out)?)
    }
}
