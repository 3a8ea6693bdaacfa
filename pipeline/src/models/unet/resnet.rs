//! diffusers' `ResnetBlock2D` as the UNet uses it: two group-norm/SiLU/3×3-conv stages with the
//! projected time embedding added between them, and a 1×1-conv shortcut when the width changes.

use kiln_runtime::Tensor;

use super::Sizes;
use crate::models::nn::{Conv2d, GroupNorm, Linear};
use crate::models::{Result, Weights};

/// One residual block, `[B, H, W, in] -> [B, H, W, out]`.
#[derive(Clone, Debug)]
pub(super) struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    /// `conv_shortcut` (a 1×1 conv, read as a linear) when `in != out`.
    shortcut: Option<Linear>,
}

impl ResnetBlock {
    /// Loads the block under `w` (`down_blocks.0.resnets.1`, ...).
    pub(super) fn load(w: &Weights, s: &Sizes, in_ch: usize, out_ch: usize) -> Result<Self> {
        let shortcut = if in_ch != out_ch {
            Some(Linear::load(&w.at("conv_shortcut"), in_ch, out_ch, true)?)
        } else {
            None
        };
        Ok(ResnetBlock {
            norm1: GroupNorm::load(&w.at("norm1"), s.groups, in_ch, s.eps)?,
            conv1: Conv2d::load_3x3(&w.at("conv1"), in_ch, out_ch)?,
            time_emb_proj: Linear::load(&w.at("time_emb_proj"), s.time_embed_dim, out_ch, true)?,
            norm2: GroupNorm::load(&w.at("norm2"), s.groups, out_ch, s.eps)?,
            conv2: Conv2d::load_3x3(&w.at("conv2"), out_ch, out_ch)?,
            shortcut,
        })
    }

    /// `x [B, H, W, in]`, `emb_silu [B, T]` (the time embedding after SiLU, shared by every
    /// block) -> `[B, H, W, out]`.
    pub(super) fn forward(&self, x: &Tensor, emb_silu: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x, true)?)?; // [B, H, W, out]
        let t = self.time_emb_proj.forward(emb_silu)?; // [B, out]
        let [b, out] = [t.dims()[0], t.dims()[1]];
        let h = h.add(&t.reshape(&[b, 1, 1, out])?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h, true)?)?;
        Ok(match &self.shortcut {
            Some(proj) => proj.forward(x)?.add(&h)?,
            None => x.add(&h)?,
        })
    }
}
