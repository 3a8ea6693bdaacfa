//! The mid block both halves share (diffusers' `UNetMidBlock2D` without time embedding):
//! resnet, attention, resnet at the lowest resolution.

use kiln_runtime::Tensor;

use super::super::{Result, Weights};
use super::attention::SpatialAttention;
use super::resnet::ResnetBlock;

/// `resnets.0 -> attentions.0 -> resnets.1`, all `channels` wide.
#[derive(Clone, Debug)]
pub struct MidBlock {
    first: ResnetBlock,
    /// Absent in VAEs built with `mid_block_add_attention = false` (no `attentions.0` tensors).
    attention: Option<SpatialAttention>,
    second: ResnetBlock,
}

impl MidBlock {
    /// Loads the block under `w` (`encoder.mid_block` or `decoder.mid_block`).
    pub fn load(w: &Weights, groups: usize, channels: usize) -> Result<MidBlock> {
        let attn = w.at("attentions.0");
        let has_attention = attn.contains("to_q.weight") || attn.contains("group_norm.weight");
        Ok(MidBlock {
            first: ResnetBlock::load(&w.at("resnets.0"), groups, channels, channels)?,
            attention: if has_attention {
                Some(SpatialAttention::load(&attn, groups, channels)?)
            } else {
                None
            },
            second: ResnetBlock::load(&w.at("resnets.1"), groups, channels, channels)?,
        })
    }

    /// `x [N, H, W, C] -> [N, H, W, C]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.first.forward(x)?;
        if let Some(attention) = &self.attention {
            h = attention.forward(&h)?;
        }
        self.second.forward(&h)
    }
}
