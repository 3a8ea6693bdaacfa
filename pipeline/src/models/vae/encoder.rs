//! The encoder (diffusers' `Encoder`): image `[N, H, W, 3]` -> `[N, H/8, W/8, 2*latent]`
//! moments (mean and log-variance), for a VAE of four levels.

use kiln_runtime::Tensor;
use kiln_runtime::checkpoint::VaeConfig;
use kiln_runtime::ops::Conv2dParams;

use super::super::nn::{Conv2d, GroupNorm};
use super::super::{Result, Weights};
use super::NORM_EPS;
use super::mid::MidBlock;
use super::resnet::ResnetBlock;

/// A stride-2 3×3 conv that halves the size, padding only the bottom and right by one
/// (diffusers' `Downsample2D` with `padding = 0`: `F.pad(x, (0, 1, 0, 1))`).
#[derive(Clone, Debug)]
struct Downsample {
    conv: Conv2d,
}

impl Downsample {
    fn load(w: &Weights, channels: usize) -> Result<Downsample> {
        Ok(Downsample {
            conv: Conv2d::load(w, channels, channels, 3, Conv2dParams { stride: 2, padding: 0 })?,
        })
    }

    /// `x [N, H, W, C] -> [N, H/2, W/2, C]` (sizes rounded up, as in diffusers).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [n, h, w, c] = x.dims_n::<4>("vae downsample")?;
        let column = Tensor::full(0.0, &[n, h, 1, c], x.dtype(), x.device())?;
        let x = Tensor::concat(&[x, &column], 2)?; // [N, H, W+1, C]
        let row = Tensor::full(0.0, &[n, 1, w + 1, c], x.dtype(), x.device())?;
        let x = Tensor::concat(&[&x, &row], 1)?; // [N, H+1, W+1, C]
        self.conv.forward(&x)
    }
}

/// One level: `layers_per_block` resnets, then a downsampler except at the last level.
#[derive(Clone, Debug)]
struct DownBlock {
    resnets: Vec<ResnetBlock>,
    downsample: Option<Downsample>,
}

/// The VAE's encoder, up to (not including) `quant_conv`.
#[derive(Clone, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    down: Vec<DownBlock>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    /// Loads `vae.encoder.*` under `w` with the sizes of `config`.
    pub fn load(w: &Weights, config: &VaeConfig) -> Result<Encoder> {
        let widths = &config.block_out_channels;
        let groups = config.norm_num_groups;
        let last = *widths.last().unwrap_or(&0);
        let mut down = Vec::with_capacity(widths.len());
        let mut in_ch = widths.first().copied().unwrap_or(0);
        for (level, &out_ch) in widths.iter().enumerate() {
            let b = w.at(format!("down_blocks.{level}"));
            let resnets = (0..config.layers_per_block)
                .map(|i| {
                    let block_in = if i == 0 { in_ch } else { out_ch };
                    ResnetBlock::load(&b.at(format!("resnets.{i}")), groups, block_in, out_ch)
                })
                .collect::<Result<Vec<_>>>()?;
            let downsample = if level + 1 < widths.len() {
                Some(Downsample::load(&b.at("downsamplers.0.conv"), out_ch)?)
            } else {
                None
            };
            down.push(DownBlock { resnets, downsample });
            in_ch = out_ch;
        }
        Ok(Encoder {
            conv_in: Conv2d::load_3x3(&w.at("conv_in"), config.in_channels, widths[0])?,
            down,
            mid: MidBlock::load(&w.at("mid_block"), groups, last)?,
            norm_out: GroupNorm::load(&w.at("conv_norm_out"), groups, last, NORM_EPS)?,
            conv_out: Conv2d::load_3x3(&w.at("conv_out"), last, 2 * config.latent_channels)?,
        })
    }

    /// `image [N, H, W, in] -> [N, H/8, W/8, 2*latent]` (for four levels).
    pub fn forward(&self, image: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(image)?;
        for block in &self.down {
            for resnet in &block.resnets {
                h = resnet.forward(&h)?;
            }
            if let Some(downsample) = &block.downsample {
                h = downsample.forward(&h)?;
            }
        }
        let h = self.mid.forward(&h)?;
        self.conv_out.forward(&self.norm_out.forward(&h, true)?)
    }
}
