//! The UNet's contracting half: the conditioning embedding, `conv_in`, the down blocks and the
//! mid block. The UNet runs it before its up blocks; a ControlNet is a copy of it with its own
//! weights (diffusers' `ControlNetModel.from_unet` copies exactly these modules).

use kiln_runtime::Tensor;
use kiln_runtime::checkpoint::{Checkpoint, UNetConfig};
use kiln_runtime::ops::TimestepEmbeddingParams;

use super::blocks::{DownBlock, LevelSpec, MidBlock};
use super::embeddings::Conditioning;
use super::ip::Cond;
use super::{AddedConditioning, Sizes, config_error};
use crate::models::nn::Conv2d;
use crate::models::{Result, Weights};

/// Conditioning, `conv_in`, down and mid blocks, loaded from `unet.*` names.
#[derive(Clone, Debug)]
pub(super) struct Encoder {
    pub(super) sizes: Sizes,
    pub(super) conditioning: Conditioning,
    pub(super) conv_in: Conv2d,
    down: Vec<DownBlock>,
    mid: Option<MidBlock>,
    /// Channels of each skip connection the down pass leaves, in push order (conv_in's first).
    pub(super) skip_channels: Vec<usize>,
    /// The mid block's cross-attentions (its transformer depth; 0 without attention).
    mid_slots: usize,
}

impl Encoder {
    /// Loads the encoder `c` describes through `w`, after checking the per-level lists it uses.
    /// Its cross-attentions take the IP-Adapter slots from 0 in the down blocks and from
    /// `mid_slot` in the mid block (after the up blocks', in diffusers' processor order).
    pub(super) fn load(ckpt: &Checkpoint, w: &Weights, c: &UNetConfig, mid_slot: usize) -> Result<Encoder> {
        let levels = c.levels();
        let per_level_ok =
            [c.down_block_types.len(), c.num_attention_heads.len(), c.transformer_layers_per_block.len()]
                .iter()
                .all(|&n| n == levels);
        if levels == 0 || !per_level_ok {
            return Err(config_error(ckpt, format!("UNet config has inconsistent per-level lists: {c:?}")));
        }
        for (level, (&ch, &heads)) in c.block_out_channels.iter().zip(&c.num_attention_heads).enumerate() {
            if heads == 0 || ch % heads != 0 {
                return Err(config_error(
                    ckpt,
                    format!("level {level}: {ch} channels do not split into {heads} attention heads"),
                ));
            }
        }
        let s = Sizes {
            groups: c.norm_num_groups,
            eps: c.norm_eps as f32,
            time_embed_dim: c.time_embed_dim(),
            context_dim: c.cross_attention_dim,
            layers_per_block: c.layers_per_block,
        };
        let params = TimestepEmbeddingParams {
            flip_sin_to_cos: c.flip_sin_to_cos,
            downscale_freq_shift: c.freq_shift as f32,
            ..TimestepEmbeddingParams::default()
        };
        let added = match (
            c.addition_embed_type.as_deref(),
            c.addition_time_embed_dim,
            c.projection_class_embeddings_input_dim,
        ) {
            (None, _, _) => None,
            (Some("text_time"), Some(id_dim), Some(input_dim)) => Some((id_dim, input_dim)),
            (other, ..) => {
                return Err(config_error(
                    ckpt,
                    format!("unsupported added embedding {other:?} (kiln runs SDXL's `text_time`)"),
                ));
            }
        };
        let c0 = c.block_out_channels[0];
        let conditioning = Conditioning::load(w, c0, s.time_embed_dim, params, added)?;
        let conv_in = Conv2d::load_3x3(&w.at("conv_in"), c.in_channels, c0)?;

        let mut skip_channels = vec![c0];
        let mut slot = 0;
        let mut down = Vec::with_capacity(levels);
        let mut in_ch = c0;
        for level in 0..levels {
            let ch = c.block_out_channels[level];
            let depths = vec![c.transformer_layers_per_block[level]; c.layers_per_block];
            let spec = LevelSpec {
                channels: ch,
                attention: c.down_has_attention(level).then_some((c.num_attention_heads[level], depths)),
            };
            let last = level + 1 == levels;
            down.push(DownBlock::load(
                &w.at(format!("down_blocks.{level}")),
                &s,
                in_ch,
                spec,
                !last,
                &mut slot,
            )?);
            skip_channels.extend(std::iter::repeat_n(ch, c.layers_per_block + usize::from(!last)));
            in_ch = ch;
        }

        let deepest = c.block_out_channels[levels - 1];
        let mid = match c.mid_block_type.as_deref() {
            None => None,
            Some("UNetMidBlock2DCrossAttn") => Some(MidBlock::load(
                &w.at("mid_block"),
                &s,
                deepest,
                Some((c.num_attention_heads[levels - 1], c.mid_transformer_layers())),
                mid_slot,
            )?),
            Some("UNetMidBlock2D") => Some(MidBlock::load(&w.at("mid_block"), &s, deepest, None, mid_slot)?),
            Some(other) => {
                return Err(config_error(ckpt, format!("unsupported mid block type {other}")));
            }
        };
        let mid_slots = if c.mid_block_type.as_deref() == Some("UNetMidBlock2DCrossAttn") {
            c.mid_transformer_layers()
        } else {
            0
        };
        Ok(Encoder { sizes: s, conditioning, conv_in, down, mid, skip_channels, mid_slots })
    }

    /// The mid block's cross-attentions.
    pub(super) fn mid_slots(&self) -> usize {
        self.mid_slots
    }

    /// `silu(time embedding + added embedding)`: `[B, time_embed_dim]`, what every resnet takes.
    pub(super) fn embedding(&self, timesteps: &[f32], added: Option<&AddedConditioning>) -> Result<Tensor> {
        Ok(self.conditioning.forward(timesteps, added)?.silu()?)
    }

    /// `x [B, H, W, C0]` (conv_in's output, plus a ControlNet's hint) through the down and mid
    /// blocks under `cond`: the deepest activation and every skip connection, `x` first.
    pub(super) fn forward(&self, x: Tensor, emb_silu: &Tensor, cond: &Cond) -> Result<(Tensor, Vec<Tensor>)> {
        let mut skips = vec![x.clone()];
        let mut x = x;
        for block in &self.down {
            x = block.forward(x, emb_silu, cond, &mut skips)?;
        }
        if let Some(mid) = &self.mid {
            x = mid.forward(&x, emb_silu, cond)?;
        }
        Ok((x, skips))
    }
}
