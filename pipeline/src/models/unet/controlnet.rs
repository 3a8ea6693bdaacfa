//! diffusers' `ControlNetModel`: a copy of a UNet's encoder that also sees a control image (a
//! Canny edge map, a depth map, ...) and whose skip connections and mid-block output, each
//! through a 1×1 conv, are added to the UNet's (see [`super::UNet::forward_controlled`]).
//!
//! The control image `[B, H, W, 3]` (pixels, values in [0, 1]) goes through the hint embedding:
//! 3×3 convs with SiLU after each but the last, every second one of stride 2, down to the latent
//! size and the first level's width; it is added to `conv_in(latents)` before the down blocks.
//! Widths are read from the weights (16, 32, 96, 256 in the published ControlNets).

use kiln_runtime::checkpoint::{Checkpoint, Component, Family, UNetConfig};
use kiln_runtime::ops::Conv2dParams;
use kiln_runtime::{DType, Device, Tensor};

use super::encoder::Encoder;
use super::ip::Cond;
use super::{AddedConditioning, check_inputs};
use crate::models::nn::Conv2d;
use crate::models::{ModelError, Result, Weights};

/// What a ControlNet adds to a UNet for one call, already scaled per row.
#[derive(Clone, Debug)]
pub struct ControlResiduals {
    /// One per UNet skip connection, in the order the down pass leaves them.
    pub down: Vec<Tensor>,
    /// Added to the mid block's output.
    pub mid: Tensor,
}

/// A loaded ControlNet, on one device in one dtype.
#[derive(Clone, Debug)]
pub struct ControlNet {
    config: UNetConfig,
    family: Family,
    dtype: DType,
    device: Device,
    encoder: Encoder,
    /// The hint embedding's convs: `conv_in`, `blocks.*`, `conv_out` (SiLU after all but it).
    hint: Vec<Conv2d>,
    /// `controlnet_down_blocks.*`: one 1×1 conv per skip connection.
    zero_convs: Vec<Conv2d>,
    /// `controlnet_mid_block`: 1×1.
    mid_out: Conv2d,
}

impl ControlNet {
    /// Loads a ControlNet opened with [`Checkpoint::open_controlnet`].
    pub fn load(ckpt: &Checkpoint, dtype: DType, device: Device) -> Result<ControlNet> {
        let c = ckpt.unet_config().clone();
        let w = Weights::new(ckpt, Component::Unet, dtype, device);
        let encoder = Encoder::load(ckpt, &w, &c, 0)?;

        let h = w.at("controlnet_cond_embedding");
        let dims = |leaf: &str| -> Result<(usize, usize)> {
            match *h.shape(&format!("{leaf}.weight"))? {
                [out, input, 3, 3] => Ok((input, out)),
                ref other => Err(ModelError::WeightShape {
                    name: h.name(&format!("{leaf}.weight")),
                    expected: vec![0, 0, 3, 3],
                    got: other.to_vec(),
                }),
            }
        };
        let same = Conv2dParams { stride: 1, padding: 1 };
        let (in_ch, out_ch) = dims("conv_in")?;
        let mut hint = vec![Conv2d::load(&h.at("conv_in"), in_ch, out_ch, 3, same)?];
        let mut k = 0;
        while h.contains(&format!("blocks.{k}.weight")) {
            let (i, o) = dims(&format!("blocks.{k}"))?;
            // diffusers pairs a size-keeping conv with a stride-2 one per width step.
            let params = if k % 2 == 1 { Conv2dParams { stride: 2, padding: 1 } } else { same };
            hint.push(Conv2d::load(&h.at(format!("blocks.{k}")), i, o, 3, params)?);
            k += 1;
        }
        let (last, _) = dims("conv_out")?;
        let c0 = c.block_out_channels[0];
        hint.push(Conv2d::load(&h.at("conv_out"), last, c0, 3, same)?);

        let one = Conv2dParams { stride: 1, padding: 0 };
        let zero_convs = encoder
            .skip_channels
            .iter()
            .enumerate()
            .map(|(i, &ch)| Conv2d::load(&w.at(format!("controlnet_down_blocks.{i}")), ch, ch, 1, one))
            .collect::<Result<Vec<_>>>()?;
        let deepest = c.block_out_channels[c.levels() - 1];
        let mid_out = Conv2d::load(&w.at("controlnet_mid_block"), deepest, deepest, 1, one)?;
        Ok(ControlNet { config: c, family: ckpt.family(), dtype, device, encoder, hint, zero_convs, mid_out })
    }

    /// The family of the models this ControlNet serves.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The dtype it computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Its config (a UNet config without up blocks).
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The residuals for `latents [B, h, w, 4]` at `timesteps`, under `context` (and SDXL's
    /// `added`), given the control image `hint [B, 8h, 8w, 3]` in [0, 1], each row's residuals
    /// multiplied by its `scales` entry (diffusers' `conditioning_scale`).
    pub fn forward(
        &self,
        latents: &Tensor,
        timesteps: &[f32],
        context: &Tensor,
        added: Option<&AddedConditioning>,
        hint: &Tensor,
        scales: &[f32],
    ) -> Result<ControlResiduals> {
        check_inputs(&self.config, latents, timesteps, context)?;
        let &[b, lh, lw, _] = latents.dims() else { unreachable!("check_inputs checked the rank") };
        let scale = 1usize << (self.hint.iter().filter(|c| c.stride() == 2).count());
        if hint.dims() != [b, lh * scale, lw * scale, 3] || scales.len() != b {
            return Err(ModelError::input(
                "controlnet",
                format!(
                    "control image {:?} and {} scales for latents {:?}: give [B, {}, {}, 3] and one scale per row",
                    hint.dims(),
                    scales.len(),
                    latents.dims(),
                    lh * scale,
                    lw * scale
                ),
            ));
        }
        let emb_silu = self.encoder.embedding(timesteps, added)?;
        let context = context.to_dtype(self.dtype)?.to_device(self.device)?;
        let x = latents.to_dtype(self.dtype)?.to_device(self.device)?;
        let mut h = hint.to_dtype(self.dtype)?.to_device(self.device)?;
        for (i, conv) in self.hint.iter().enumerate() {
            h = conv.forward(&h)?;
            if i + 1 < self.hint.len() {
                h = h.silu()?;
            }
        }
        let x = self.encoder.conv_in.forward(&x)?.add(&h)?; // [B, h, w, C0]
        let (x, skips) = self.encoder.forward(x, &emb_silu, &Cond { context: &context, ip: None })?;
        let row_scales = if scales.iter().all(|&s| s == 1.0) {
            None
        } else {
            Some(Tensor::from_f32(scales.to_vec(), &[b, 1, 1, 1], self.dtype, self.device)?)
        };
        let scaled = |t: Tensor| -> Result<Tensor> {
            match &row_scales {
                Some(s) => Ok(t.mul(s)?),
                None => Ok(t),
            }
        };
        let down = skips
            .iter()
            .zip(&self.zero_convs)
            .map(|(skip, conv)| scaled(conv.forward(skip)?))
            .collect::<Result<Vec<_>>>()?;
        let mid = scaled(self.mid_out.forward(&x)?)?;
        Ok(ControlResiduals { down, mid })
    }
}
