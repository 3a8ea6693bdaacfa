//! The decoder (diffusers' `Decoder`): latents `[N, h, w, latent]` -> image `[N, 8h, 8w, 3]`
//! in about [-1, 1], for a VAE of four levels.

use kiln_runtime::Tensor;
use kiln_runtime::checkpoint::VaeConfig;

use super::super::nn::{Conv2d, GroupNorm};
use super::super::{Result, Weights};
use super::NORM_EPS;
use super::mid::MidBlock;
use super::resnet::ResnetBlock;

/// One level, deepest first: `layers_per_block + 1` resnets, then nearest 2× upsampling and a
/// 3×3 conv except at the last level.
#[derive(Clone, Debug)]
struct UpBlock {
    resnets: Vec<ResnetBlock>,
    upsample: Option<Conv2d>,
}

/// The VAE's decoder, after `post_quant_conv`.
#[derive(Clone, Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    /// Loads `vae.decoder.*` under `w` with the sizes of `config`.
    pub fn load(w: &Weights, config: &VaeConfig) -> Result<Decoder> {
        let widths: Vec<usize> = config.block_out_channels.iter().rev().copied().collect(); // deepest first
        let groups = config.norm_num_groups;
        let deepest = widths.first().copied().unwrap_or(0);
        let mut up = Vec::with_capacity(widths.len());
        let mut in_ch = deepest;
        for (i, &out_ch) in widths.iter().enumerate() {
            let b = w.at(format!("up_blocks.{i}"));
            let resnets = (0..=config.layers_per_block)
                .map(|r| {
                    let block_in = if r == 0 { in_ch } else { out_ch };
                    ResnetBlock::load(&b.at(format!("resnets.{r}")), groups, block_in, out_ch)
                })
                .collect::<Result<Vec<_>>>()?;
            let upsample = if i + 1 < widths.len() {
                Some(Conv2d::load_3x3(&b.at("upsamplers.0.conv"), out_ch, out_ch)?)
            } else {
                None
            };
            up.push(UpBlock { resnets, upsample });
            in_ch = out_ch;
        }
        let first = in_ch; // the highest-resolution width
        Ok(Decoder {
            conv_in: Conv2d::load_3x3(&w.at("conv_in"), config.latent_channels, deepest)?,
            mid: MidBlock::load(&w.at("mid_block"), groups, deepest)?,
            up,
            norm_out: GroupNorm::load(&w.at("conv_norm_out"), groups, first, NORM_EPS)?,
            conv_out: Conv2d::load_3x3(&w.at("conv_out"), first, config.out_channels)?,
        })
    }

    /// `z [N, h, w, latent] -> [N, 8h, 8w, out]` (for four levels).
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = self.mid.forward(&self.conv_in.forward(z)?)?;
        for block in &self.up {
            for resnet in &block.resnets {
                h = resnet.forward(&h)?;
            }
            if let Some(conv) = &block.upsample {
                h = conv.forward(&h.upsample_nearest2x()?)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward(&h, true)?)
    }
}
