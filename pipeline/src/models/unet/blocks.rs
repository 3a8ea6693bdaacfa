//! The UNet's levels: down blocks (resnets, optional transformers, a stride-2 downsampler),
//! the mid block, and up blocks (resnets on the skip-concatenated activations, optional
//! transformers, nearest 2× upsampling and a conv).

use kiln_runtime::Tensor;
use kiln_runtime::ops::Conv2dParams;

use super::Sizes;
use super::ip::Cond;
use super::resnet::ResnetBlock;
use super::transformer::SpatialTransformer;
use crate::models::nn::Conv2d;
use crate::models::{Result, Weights};

/// A resnet, followed by a transformer on attention levels.
#[derive(Clone, Debug)]
struct Layer {
    resnet: ResnetBlock,
    attention: Option<SpatialTransformer>,
}

impl Layer {
    fn forward(&self, x: &Tensor, emb_silu: &Tensor, cond: &Cond) -> Result<Tensor> {
        let h = self.resnet.forward(x, emb_silu)?;
        match &self.attention {
            Some(t) => t.forward(&h, cond),
            None => Ok(h),
        }
    }
}

/// What a level has: its width, whether it attends, with how many heads and blocks.
#[derive(Clone, Debug)]
pub(super) struct LevelSpec {
    /// Output channels of the level.
    pub channels: usize,
    /// On attention levels: heads, and the transformer depth of each layer's attention
    /// (uneven in distilled models such as SSD-1B).
    pub attention: Option<(usize, Vec<usize>)>,
}

/// Loads layer `index`; its transformer's cross-attentions take the slots from `*slot` on (and
/// move it past them).
fn load_layer(
    w: &Weights,
    s: &Sizes,
    index: usize,
    in_ch: usize,
    spec: &LevelSpec,
    slot: &mut usize,
) -> Result<Layer> {
    let resnet = ResnetBlock::load(&w.at(format!("resnets.{index}")), s, in_ch, spec.channels)?;
    let attention = match &spec.attention {
        Some((heads, depths)) => {
            let depth = depths.get(index).copied().ok_or_else(|| {
                crate::models::ModelError::input("unet", format!("no transformer depth for layer {index}"))
            })?;
            let at = w.at(format!("attentions.{index}"));
            let first = *slot;
            *slot += depth;
            Some(SpatialTransformer::load(&at, s, spec.channels, (*heads, depth), first)?)
        }
        None => None,
    };
    Ok(Layer { resnet, attention })
}

/// `CrossAttnDownBlock2D` / `DownBlock2D`.
#[derive(Clone, Debug)]
pub(super) struct DownBlock {
    layers: Vec<Layer>,
    /// `downsamplers.0.conv`: 3×3, stride 2, padding 1 (all levels but the last).
    downsampler: Option<Conv2d>,
}

impl DownBlock {
    /// Loads `down_blocks.{i}` taking `in_ch` channels.
    pub(super) fn load(
        w: &Weights,
        s: &Sizes,
        in_ch: usize,
        spec: LevelSpec,
        downsample: bool,
        slot: &mut usize,
    ) -> Result<Self> {
        let layers = (0..s.layers_per_block)
            .map(|j| load_layer(w, s, j, if j == 0 { in_ch } else { spec.channels }, &spec, slot))
            .collect::<Result<_>>()?;
        let downsampler = if downsample {
            let params = Conv2dParams { stride: 2, padding: 1 };
            Some(Conv2d::load(&w.at("downsamplers.0.conv"), spec.channels, spec.channels, 3, params)?)
        } else {
            None
        };
        Ok(DownBlock { layers, downsampler })
    }

    /// `x [B, H, W, in] -> [B, H/2, W/2, C]` (or `[B, H, W, C]` on the last level), pushing
    /// every layer's output (and the downsampled one) onto `skips`.
    pub(super) fn forward(
        &self,
        x: Tensor,
        emb_silu: &Tensor,
        cond: &Cond,
        skips: &mut Vec<Tensor>,
    ) -> Result<Tensor> {
        let mut x = x;
        for layer in &self.layers {
            x = layer.forward(&x, emb_silu, cond)?;
            skips.push(x.clone());
        }
        if let Some(down) = &self.downsampler {
            x = down.forward(&x)?;
            skips.push(x.clone());
        }
        Ok(x)
    }
}

/// The mid block at the lowest resolution: `UNetMidBlock2DCrossAttn` (resnet, transformer,
/// resnet) or, in SSD-1B, `UNetMidBlock2D` without attention (one resnet).
#[derive(Clone, Debug)]
pub(super) struct MidBlock {
    first: ResnetBlock,
    /// The transformer and the second resnet, absent in a resnet-only mid block.
    attended: Option<(SpatialTransformer, ResnetBlock)>,
}

impl MidBlock {
    /// Loads `mid_block` of `channels` width; `attention` is `(heads, depth)`, or `None` for a
    /// resnet-only block; its cross-attentions take the slots from `slot` on.
    pub(super) fn load(
        w: &Weights,
        s: &Sizes,
        channels: usize,
        attention: Option<(usize, usize)>,
        slot: usize,
    ) -> Result<Self> {
        let attended = match attention {
            Some(sizes) => Some((
                SpatialTransformer::load(&w.at("attentions.0"), s, channels, sizes, slot)?,
                ResnetBlock::load(&w.at("resnets.1"), s, channels, channels)?,
            )),
            None => None,
        };
        Ok(MidBlock { first: ResnetBlock::load(&w.at("resnets.0"), s, channels, channels)?, attended })
    }

    /// `[B, H, W, C] -> [B, H, W, C]`.
    pub(super) fn forward(&self, x: &Tensor, emb_silu: &Tensor, cond: &Cond) -> Result<Tensor> {
        let h = self.first.forward(x, emb_silu)?;
        match &self.attended {
            Some((attention, second)) => second.forward(&attention.forward(&h, cond)?, emb_silu),
            None => Ok(h),
        }
    }
}

/// `CrossAttnUpBlock2D` / `UpBlock2D`.
#[derive(Clone, Debug)]
pub(super) struct UpBlock {
    layers: Vec<Layer>,
    /// `upsamplers.0.conv` after nearest 2× upsampling (all levels but the last).
    upsampler: Option<Conv2d>,
}

impl UpBlock {
    /// Loads `up_blocks.{i}`: `prev_ch` channels come from below; `skip_channels[j]` is the
    /// width of the skip activation resnet `j` concatenates.
    pub(super) fn load(
        w: &Weights,
        s: &Sizes,
        prev_ch: usize,
        skip_channels: &[usize],
        spec: LevelSpec,
        upsample: bool,
        slot: &mut usize,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(skip_channels.len());
        for (j, skip) in skip_channels.iter().enumerate() {
            let from_below = if j == 0 { prev_ch } else { spec.channels };
            layers.push(load_layer(w, s, j, from_below + skip, &spec, slot)?);
        }
        let upsampler = if upsample {
            Some(Conv2d::load_3x3(&w.at("upsamplers.0.conv"), spec.channels, spec.channels)?)
        } else {
            None
        };
        Ok(UpBlock { layers, upsampler })
    }

    /// `x [B, H, W, prev]` with skips popped from `skips` (last first) -> `[B, 2H, 2W, C]`
    /// (or `[B, H, W, C]` on the last level).
    pub(super) fn forward(
        &self,
        x: Tensor,
        emb_silu: &Tensor,
        cond: &Cond,
        skips: &mut Vec<Tensor>,
    ) -> Result<Tensor> {
        let mut x = x;
        for layer in &self.layers {
            let Some(skip) = skips.pop() else {
                return Err(crate::models::ModelError::input("unet", "skip connections exhausted"));
            };
            let joined = Tensor::concat(&[&x, &skip], 3)?; // [B, H, W, C + Cskip]
            x = layer.forward(&joined, emb_silu, cond)?;
        }
        if let Some(up) = &self.upsampler {
            x = up.forward(&x.upsample_nearest2x()?)?;
        }
        Ok(x)
    }
}
