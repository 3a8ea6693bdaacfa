//! The VAE's residual block (diffusers' `ResnetBlock2D` without a time embedding).

use super::super::nn::{Conv2d, GroupNorm, Linear};
use super::super::{Result, Weights};
use super::NORM_EPS;

/// `x + conv2(silu(norm2(conv1(silu(norm1(x))))))`, the skip through a 1×1 conv when the block
/// changes the width.
#[derive(Clone, Debug)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    /// `conv_shortcut`, a 1×1 conv applied as a linear over the channels.
    shortcut: Option<Linear>,
}

impl ResnetBlock {
    /// Loads the block under `w` (`...resnets.{i}`), `in_ch -> out_ch` channels.
    pub fn load(w: &Weights, groups: usize, in_ch: usize, out_ch: usize) -> Result<ResnetBlock> {
        Ok(ResnetBlock {
            norm1: GroupNorm::load(&w.at("norm1"), groups, in_ch, NORM_EPS)?,
            conv1: Conv2d::load_3x3(&w.at("conv1"), in_ch, out_ch)?,
            norm2: GroupNorm::load(&w.at("norm2"), groups, out_ch, NORM_EPS)?,
            conv2: Conv2d::load_3x3(&w.at("conv2"), out_ch, out_ch)?,
            shortcut: if in_ch == out_ch {
                None
            } else {
                Some(Linear::load(&w.at("conv_shortcut"), in_ch, out_ch, true)?)
            },
        })
    }

    /// `x [N, H, W, in] -> [N, H, W, out]`.
    pub fn forward(&self, x: &kiln_runtime::Tensor) -> Result<kiln_runtime::Tensor> {
        let h = self.conv1.forward(&self.norm1.forward(x, true)?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h, true)?)?; // dropout: identity at inference
        let skip = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        Ok(skip.add(&h)?)
    }
}
