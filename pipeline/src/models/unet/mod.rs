//! The denoising UNet of SD 1.5, SDXL base, the SDXL refiner and the inpainting models
//! (diffusers' `UNet2DConditionModel`), sized by [`Checkpoint::unet_config`].
//!
//! Activations are NHWC: `latents [B, H, W, in_channels]` (4, or 9 for inpainting: latent,
//! mask, masked-image latent) -> predicted noise `[B, H, W, out_channels]`. The text context is
//! `[B, L, cross_attention_dim]` with any `L` (77 per prompt chunk; long prompts concatenate
//! chunks). SDXL models also take [`AddedConditioning`].
//!
//! Parts: `embeddings` (timestep and added embeddings), `resnet` (residual blocks),
//! `transformer` (spatial transformers: self-, cross-attention, GEGLU), `blocks` (down, mid and
//! up blocks). `upcast_attention` needs nothing here: every op accumulates in f32 whatever the
//! storage dtype, which is what diffusers' upcast buys for half-precision models.

mod blocks;
mod controlnet;
mod embeddings;
mod encoder;
pub mod ip;
mod resnet;
mod transformer;

use kiln_runtime::checkpoint::{Checkpoint, CheckpointError, Component, UNetConfig};
use kiln_runtime::{DType, Device, Tensor};

use self::blocks::{LevelSpec, UpBlock};
use self::encoder::Encoder;
use super::nn::{Conv2d, GroupNorm};

pub use self::controlnet::{ControlNet, ControlResiduals};
use self::ip::Cond;
pub use self::ip::IpCall;

/// What a UNet call adds besides latents, timesteps and text: a ControlNet's residuals and an
/// IP-Adapter's image tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras<'a> {
    /// Added to the skip connections and the mid block's output.
    pub control: Option<&'a ControlResiduals>,
    /// Attended to by every cross-attention whose scale is not 0.
    pub ip: Option<&'a IpCall>,
}
use super::patch::PatchTable;
use super::{ModelError, Result, Weights};

/// Sizes every block needs, read once from the config.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// Group-norm groups (32 in the published models).
    groups: usize,
    /// Resnet group-norm epsilon.
    eps: f32,
    /// Width of the time embedding (4 × the first level's channels).
    time_embed_dim: usize,
    /// Width of the text context.
    context_dim: usize,
    /// Resnets per down level (up levels have one more).
    layers_per_block: usize,
}

/// SDXL's extra conditioning (`added_cond_kwargs` in diffusers).
#[derive(Clone, Debug)]
pub struct AddedConditioning {
    /// Pooled text embedding `[B, P]` (OpenCLIP-G's projected pooled output: P = 1280).
    pub text_embeds: Tensor,
    /// Time ids, row-major `[B, n]`: SDXL base's six (original height, width, crop top, left,
    /// target height, width), the refiner's five (height, width, crop top, left, aesthetic
    /// score). Each goes through a sinusoidal embedding of `addition_time_embed_dim`.
    pub time_ids: Vec<f32>,
}

/// The loaded UNet, on one device in one dtype.
#[derive(Clone, Debug)]
pub struct UNet {
    config: UNetConfig,
    dtype: DType,
    device: Device,
    /// Conditioning, conv_in, down and mid blocks: the part a ControlNet copies.
    encoder: Encoder,
    up: Vec<UpBlock>,
    /// Its cross-attentions: the layers an IP-Adapter has weights for.
    ip_slots: usize,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    /// Every linear and convolution weight, by canonical name.
    patchable: PatchTable,
}

/// A config problem found at load, as a checkpoint config error.
fn config_error(ckpt: &Checkpoint, reason: String) -> ModelError {
    ModelError::Checkpoint(CheckpointError::Config { path: ckpt.path().to_path_buf(), reason })
}

impl UNet {
    /// Loads the UNet of `ckpt` as `dtype` onto `device`, checking every weight's shape against
    /// the config ([`ModelError::WeightShape`] names the first that does not fit).
    pub fn load(ckpt: &Checkpoint, dtype: DType, device: Device) -> Result<UNet> {
        let c = ckpt.unet_config().clone();
        let w = Weights::new(ckpt, Component::Unet, dtype, device);
        let levels = c.levels();
        let up_lists_ok = c.up_block_types.len() == levels
            && c.reverse_transformer_layers_per_block.as_ref().is_none_or(|up| {
                up.len() == levels && up.iter().all(|block| block.len() == c.layers_per_block + 1)
            });
        if !up_lists_ok {
            return Err(config_error(ckpt, format!("UNet config has inconsistent per-level lists: {c:?}")));
        }
        // IP-Adapter slots follow diffusers' processor order: down blocks, up blocks, mid block.
        let down_slots: usize = (0..levels)
            .filter(|&l| c.down_has_attention(l))
            .map(|l| c.layers_per_block * c.transformer_layers_per_block[l])
            .sum();
        let up_slots: usize = (0..levels)
            .filter(|&i| c.up_block_types[i].contains("CrossAttn"))
            .map(|i| c.up_transformer_layers(i).iter().sum::<usize>())
            .sum();
        let encoder = Encoder::load(ckpt, &w, &c, down_slots + up_slots)?;
        let mut slot = down_slots;
        let s = encoder.sizes;
        let c0 = c.block_out_channels[0];
        let deepest = c.block_out_channels[levels - 1];
        let attention_at = |attends: bool, level: usize, depths: Vec<usize>| {
            attends.then_some((c.num_attention_heads[level], depths))
        };
        let mut skip_channels = encoder.skip_channels.clone();
        let mut up = Vec::with_capacity(levels);
        let mut prev_ch = deepest;
        for i in 0..levels {
            let level = levels - 1 - i; // the down level this up block mirrors
            let ch = c.block_out_channels[level];
            let attends = c.up_block_types[i].contains("CrossAttn");
            // diffusers reverses the per-level depths for the up blocks, unless the config
            // lists them (SSD-1B).
            let spec = LevelSpec {
                channels: ch,
                attention: attention_at(attends, level, c.up_transformer_layers(i)),
            };
            let n = c.layers_per_block + 1;
            let take = skip_channels.split_off(skip_channels.len().saturating_sub(n));
            let skips: Vec<usize> = take.into_iter().rev().collect();
            up.push(UpBlock::load(
                &w.at(format!("up_blocks.{i}")),
                &s,
                prev_ch,
                &skips,
                spec,
                i + 1 < levels,
                &mut slot,
            )?);
            prev_ch = ch;
        }

        let norm_out = GroupNorm::load(&w.at("conv_norm_out"), s.groups, c0, s.eps)?;
        let conv_out = Conv2d::load_3x3(&w.at("conv_out"), c0, c.out_channels)?;
        let ip_slots = slot + encoder.mid_slots();
        Ok(UNet {
            norm_out,
            conv_out,
            patchable: w.patchable(),
            config: c,
            dtype,
            device,
            encoder,
            up,
            ip_slots,
        })
    }

    /// Each cross-attention layer (in diffusers' processor order: down, up, mid blocks) with the
    /// attention module it is in (`down_blocks.2.attentions.1`) and its width: what an
    /// IP-Adapter for this model has weights for.
    fn ip_layer_list(&self) -> Vec<(String, usize)> {
        let c = &self.config;
        let levels = c.levels();
        let mut out = Vec::with_capacity(self.ip_slots);
        for l in (0..levels).filter(|&l| c.down_has_attention(l)) {
            for j in 0..c.layers_per_block {
                let name = format!("down_blocks.{l}.attentions.{j}");
                out.extend(std::iter::repeat_n(
                    (name, c.block_out_channels[l]),
                    c.transformer_layers_per_block[l],
                ));
            }
        }
        for i in (0..levels).filter(|&i| c.up_block_types[i].contains("CrossAttn")) {
            for (j, depth) in c.up_transformer_layers(i).into_iter().enumerate() {
                let name = format!("up_blocks.{i}.attentions.{j}");
                out.extend(std::iter::repeat_n((name, c.block_out_channels[levels - 1 - i]), depth));
            }
        }
        let mid = ("mid_block.attentions.0".to_string(), c.block_out_channels[levels - 1]);
        out.extend(std::iter::repeat_n(mid, self.encoder.mid_slots()));
        out
    }

    /// The width of each cross-attention layer, in IP-Adapter order.
    pub fn ip_widths(&self) -> Vec<usize> {
        self.ip_layer_list().into_iter().map(|(_, w)| w).collect()
    }

    /// The attention module of each cross-attention layer, in IP-Adapter order.
    pub fn ip_layers(&self) -> Vec<String> {
        self.ip_layer_list().into_iter().map(|(n, _)| n).collect()
    }

    /// The weights a LoRA can patch, by canonical name.
    pub fn patchable(&self) -> &PatchTable {
        &self.patchable
    }

    /// The config the model was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The dtype the model computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Whether [`UNet::forward`] needs [`AddedConditioning`] (SDXL).
    pub fn needs_added_conditioning(&self) -> bool {
        self.encoder.conditioning.needs_added()
    }

    /// Predicts the noise: `latents [B, H, W, in]` (NHWC) at `timesteps` (one per sample),
    /// conditioned on `context [B, L, cross_attention_dim]` and, for SDXL, `added` ->
    /// `[B, H, W, out]` in the model's dtype. Inputs are converted to the model's dtype and
    /// device; shapes that do not fit give [`ModelError::Input`].
    pub fn forward(
        &self,
        latents: &Tensor,
        timesteps: &[f32],
        context: &Tensor,
        added: Option<&AddedConditioning>,
    ) -> Result<Tensor> {
        self.forward_with(latents, timesteps, context, added, Extras::default())
    }

    /// [`UNet::forward`] with [`Extras`]: a ControlNet's residuals (diffusers'
    /// `down_block_additional_residuals` and `mid_block_additional_residual`), each added to its
    /// skip connection once the down pass is done and the mid one to the mid block's output; an
    /// IP-Adapter's image attention in the cross-attentions.
    pub fn forward_with(
        &self,
        latents: &Tensor,
        timesteps: &[f32],
        context: &Tensor,
        added: Option<&AddedConditioning>,
        extras: Extras,
    ) -> Result<Tensor> {
        check_inputs(&self.config, latents, timesteps, context)?;
        let emb_silu = self.encoder.embedding(timesteps, added)?; // [B, T]
        let context = context.to_dtype(self.dtype)?.to_device(self.device)?; // [B, L, Cc]
        let x = latents.to_dtype(self.dtype)?.to_device(self.device)?;
        let x = self.encoder.conv_in.forward(&x)?; // [B, H, W, C0]
        let cond = Cond { context: &context, ip: extras.ip };
        let (mut x, mut skips) = self.encoder.forward(x, &emb_silu, &cond)?;
        if let Some(control) = extras.control {
            if control.down.len() != skips.len() {
                return Err(ModelError::input(
                    "unet",
                    format!(
                        "{} ControlNet residuals for {} skip connections",
                        control.down.len(),
                        skips.len()
                    ),
                ));
            }
            for (skip, residual) in skips.iter_mut().zip(&control.down) {
                *skip = skip.add(&residual.to_dtype(self.dtype)?)?;
            }
            x = x.add(&control.mid.to_dtype(self.dtype)?)?;
        }
        for block in &self.up {
            x = block.forward(x, &emb_silu, &cond, &mut skips)?;
        }
        let x = self.norm_out.forward(&x, true)?;
        self.conv_out.forward(&x) // [B, H, W, out]
    }
}

/// Checks that the inputs fit the model.
fn check_inputs(c: &UNetConfig, latents: &Tensor, timesteps: &[f32], context: &Tensor) -> Result<()> {
    let bad = |message: String| Err(ModelError::input("unet", message));
    let &[b, h, w, ch] = latents.dims() else {
        return bad(format!("latents must be [B, H, W, C] (NHWC), got {:?}", latents.dims()));
    };
    if ch != c.in_channels {
        return bad(format!(
            "latents {:?} have {ch} channels, the model takes {}",
            latents.dims(),
            c.in_channels
        ));
    }
    let multiple = 1usize << (c.levels() - 1);
    if b == 0 || h == 0 || w == 0 || h % multiple != 0 || w % multiple != 0 {
        return bad(format!(
            "latent size {h}x{w} (batch {b}) must be non-empty and divisible by {multiple} (the UNet halves it \
             {} times)",
            c.levels() - 1
        ));
    }
    if timesteps.len() != b {
        return bad(format!("{} timesteps for a batch of {b}: give one per sample", timesteps.len()));
    }
    match context.dims() {
        &[cb, l, cc] if cb == b && l > 0 && cc == c.cross_attention_dim => Ok(()),
        dims => bad(format!("context must be [B = {b}, L > 0, {}], got {dims:?}", c.cross_attention_dim)),
    }
}
