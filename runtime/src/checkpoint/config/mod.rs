//! Model sizes of each component, with field names mirroring diffusers' and transformers'
//! `config.json` (`block_out_channels`, `layers_per_block`, `cross_attention_dim`, ...).
//!
//! Three sources fill them: a diffusers folder's `config.json` ([`diffusers`], honoured as
//! written: distilled and custom models differ from the defaults), the weights themselves
//! ([`infer`]: widths, levels, depths, channels), and the family's published config for what the
//! weights cannot tell (head counts, activation, scaling factor). Configs read from JSON are
//! cross-checked against the weights.

pub mod diffusers;
pub mod infer;
pub mod ranges;

use super::family::Family;

/// The denoising UNet (diffusers' `UNet2DConditionModel`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct UNetConfig {
    /// Latent height and width the model was trained at (64 for SD 1.5, 128 for SDXL).
    pub sample_size: usize,
    /// Input channels (4, or 9 for inpainting: latent, mask, masked-image latent).
    pub in_channels: usize,
    /// Output channels (the predicted noise).
    pub out_channels: usize,
    /// Block type per down level: `CrossAttnDownBlock2D` (with transformers) or `DownBlock2D`.
    pub down_block_types: Vec<String>,
    /// Block type per up block, deepest first: `CrossAttnUpBlock2D` or `UpBlock2D`.
    pub up_block_types: Vec<String>,
    /// The mid block: `UNetMidBlock2DCrossAttn`, `UNetMidBlock2D`, or none.
    pub mid_block_type: Option<String>,
    /// Channels per level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per down level (up levels have one more).
    pub layers_per_block: usize,
    /// Transformer blocks per attention of each down level; up levels use the reverse unless
    /// [`UNetConfig::reverse_transformer_layers_per_block`] says otherwise, and the mid block
    /// the last entry.
    pub transformer_layers_per_block: Vec<usize>,
    /// Transformer blocks of each attention of each up block (deepest first), where they are
    /// not the reverse of the down levels' (SSD-1B: `[[4, 4, 10], [2, 1, 1], [1, 1, 1]]`).
    pub reverse_transformer_layers_per_block: Option<Vec<Vec<usize>>>,
    /// Width of the text context (the text encoders' hidden states, concatenated for SDXL).
    pub cross_attention_dim: usize,
    /// Attention heads per level. diffusers' `attention_head_dim` means this too, for
    /// historical reasons, when `num_attention_heads` is absent; here it is resolved.
    pub num_attention_heads: Vec<usize>,
    /// Whether the transformers' `proj_in`/`proj_out` are linears (SDXL) or 1×1 convs (SD 1.5).
    pub use_linear_projection: bool,
    /// Whether attention is computed in f32 even for half-precision weights.
    pub upcast_attention: bool,
    /// `text_time` for SDXL's pooled-text + size/crop embedding, none for SD 1.5.
    pub addition_embed_type: Option<String>,
    /// Width of each sinusoidal time-id embedding (256 for SDXL).
    pub addition_time_embed_dim: Option<usize>,
    /// Input width of the added embedding (2816 SDXL base, 2560 refiner).
    pub projection_class_embeddings_input_dim: Option<usize>,
    /// Groups of every group norm.
    pub norm_num_groups: usize,
    /// Epsilon of every group norm.
    pub norm_eps: f64,
    /// Whether the timestep embedding puts cosines first.
    pub flip_sin_to_cos: bool,
    /// Frequency shift of the timestep embedding.
    pub freq_shift: f64,
    /// Activation of resnets and embeddings (`silu`).
    pub act_fn: String,
}

/// The autoencoder (diffusers' `AutoencoderKL`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VaeConfig {
    /// Image channels in (3).
    pub in_channels: usize,
    /// Image channels out (3).
    pub out_channels: usize,
    /// Latent channels (4).
    pub latent_channels: usize,
    /// Channels per level, highest resolution first.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level (decoder levels have one more).
    pub layers_per_block: usize,
    /// Encoder block types (`DownEncoderBlock2D`).
    pub down_block_types: Vec<String>,
    /// Decoder block types (`UpDecoderBlock2D`).
    pub up_block_types: Vec<String>,
    /// Groups of every group norm.
    pub norm_num_groups: usize,
    /// Image size the model was trained at.
    pub sample_size: usize,
    /// Latents are multiplied by this after encoding and divided before decoding
    /// (0.18215 SD 1.5, 0.13025 SDXL).
    pub scaling_factor: f64,
    /// Subtracted from latents before scaling, when set.
    pub shift_factor: Option<f64>,
    /// Whether the VAE must run in f32 (the original SDXL VAE overflows in f16).
    pub force_upcast: bool,
    /// Whether there is a `quant_conv` after the encoder.
    pub use_quant_conv: bool,
    /// Whether there is a `post_quant_conv` before the decoder.
    pub use_post_quant_conv: bool,
    /// Activation (`silu`).
    pub act_fn: String,
}

/// A CLIP text encoder (transformers' `CLIPTextConfig`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TextEncoderConfig {
    /// Token vocabulary size (49408).
    pub vocab_size: usize,
    /// Width of the hidden states (768 CLIP-L, 1280 OpenCLIP-G).
    pub hidden_size: usize,
    /// Width of each MLP (3072 CLIP-L, 5120 OpenCLIP-G).
    pub intermediate_size: usize,
    /// Transformer layers (12 CLIP-L, 32 OpenCLIP-G).
    pub num_hidden_layers: usize,
    /// Attention heads (12 CLIP-L, 20 OpenCLIP-G: head dim 64).
    pub num_attention_heads: usize,
    /// Positions (77 tokens).
    pub max_position_embeddings: usize,
    /// MLP activation: `quick_gelu` (CLIP-L) or `gelu` (OpenCLIP-G).
    pub hidden_act: String,
    /// Epsilon of the layer norms.
    pub layer_norm_eps: f64,
    /// Width of the pooled-output projection, when the model has one (`CLIPTextModelWithProjection`:
    /// SDXL's second encoder).
    pub projection_dim: Option<usize>,
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

impl UNetConfig {
    /// The published config of `family`'s UNet (runwayml / stabilityai `unet/config.json`).
    pub fn published(family: Family) -> UNetConfig {
        let sd15 = UNetConfig {
            sample_size: 64,
            in_channels: family.unet_in_channels(),
            out_channels: 4,
            down_block_types: strings(&[
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ]),
            up_block_types: strings(&[
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ]),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: 2,
            transformer_layers_per_block: vec![1; 4],
            reverse_transformer_layers_per_block: None,
            cross_attention_dim: family.context_dim(),
            num_attention_heads: vec![8; 4],
            use_linear_projection: false,
            upcast_attention: false,
            addition_embed_type: None,
            addition_time_embed_dim: None,
            projection_class_embeddings_input_dim: None,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            act_fn: "silu".into(),
        };
        let sdxl = |widths: Vec<usize>, down: &[&str], up: &[&str], depth: Vec<usize>| UNetConfig {
            sample_size: 128,
            down_block_types: strings(down),
            up_block_types: strings(up),
            // SDXL's head width is 64 at every level.
            num_attention_heads: widths.iter().map(|c| c / 64).collect(),
            block_out_channels: widths,
            transformer_layers_per_block: depth,
            use_linear_projection: true,
            addition_embed_type: Some("text_time".into()),
            addition_time_embed_dim: Some(256),
            projection_class_embeddings_input_dim: family.addition_embed_inputs(),
            ..sd15.clone()
        };
        match family {
            Family::Sd15 | Family::Sd15Inpaint => sd15,
            Family::SdxlBase | Family::SdxlInpaint => sdxl(
                vec![320, 640, 1280],
                &["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                &["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                vec![1, 2, 10],
            ),
            // segmind/SSD-1B: SDXL's levels with depths 2 and 4 down, an uneven 4, 4, 10 and
            // 2, 1, 1 up, and a mid block of one resnet.
            Family::Ssd1b => UNetConfig {
                reverse_transformer_layers_per_block: Some(vec![
                    vec![4, 4, 10],
                    vec![2, 1, 1],
                    vec![1, 1, 1],
                ]),
                mid_block_type: Some("UNetMidBlock2D".into()),
                ..sdxl(
                    vec![320, 640, 1280],
                    &["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                    &["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                    vec![1, 2, 4],
                )
            },
            Family::SdxlRefiner => sdxl(
                vec![384, 768, 1536, 1536],
                &["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                &["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                vec![4; 4],
            ),
        }
    }

    /// Number of resolution levels.
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Whether down level `level` has transformers.
    pub fn down_has_attention(&self, level: usize) -> bool {
        self.down_block_types.get(level).is_some_and(|t| t.contains("CrossAttn"))
    }

    /// Width of each attention head at `level` (64 for SDXL; 40, 80, 160, 160 for SD 1.5).
    pub fn head_dim(&self, level: usize) -> usize {
        self.block_out_channels[level] / self.num_attention_heads[level].max(1)
    }

    /// Width of the timestep embedding (4 × the first level's channels).
    pub fn time_embed_dim(&self) -> usize {
        self.block_out_channels[0] * 4
    }

    /// Transformer blocks in the mid block's attention.
    pub fn mid_transformer_layers(&self) -> usize {
        self.transformer_layers_per_block.last().copied().unwrap_or(1)
    }

    /// Transformer blocks of each of up block `i`'s `layers_per_block + 1` attentions (up
    /// blocks run deepest first).
    pub fn up_transformer_layers(&self, i: usize) -> Vec<usize> {
        match &self.reverse_transformer_layers_per_block {
            Some(per_block) => per_block.get(i).cloned().unwrap_or_default(),
            None => {
                let level = self.levels().saturating_sub(i + 1);
                let depth = self.transformer_layers_per_block.get(level).copied().unwrap_or(1);
                vec![depth; self.layers_per_block + 1]
            }
        }
    }

    /// The up depths as an explicit list when they differ from the reverse of the down depths,
    /// `None` when they do not: one canonical form, whichever source a config came from.
    pub fn normalize_up_depths(&mut self) {
        let Some(given) = self.reverse_transformer_layers_per_block.take() else { return };
        let default: Vec<Vec<usize>> = (0..self.levels()).map(|i| self.up_transformer_layers(i)).collect();
        if given != default {
            self.reverse_transformer_layers_per_block = Some(given);
        }
    }
}

impl VaeConfig {
    /// The published config of `family`'s VAE.
    pub fn published(family: Family) -> VaeConfig {
        VaeConfig {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            down_block_types: vec!["DownEncoderBlock2D".into(); 4],
            up_block_types: vec!["UpDecoderBlock2D".into(); 4],
            norm_num_groups: 32,
            sample_size: if family.is_sdxl() { 1024 } else { 512 },
            scaling_factor: if family.is_sdxl() { 0.13025 } else { 0.18215 },
            shift_factor: None,
            force_upcast: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
            act_fn: "silu".into(),
        }
    }

    /// Number of resolution levels.
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }
}

impl TextEncoderConfig {
    /// OpenAI CLIP ViT-L/14's text tower (SD 1.5, and SDXL base's first encoder).
    pub fn clip_l() -> TextEncoderConfig {
        TextEncoderConfig {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            projection_dim: None,
        }
    }

    /// OpenCLIP ViT-bigG/14's text tower with its projection (SDXL's second encoder).
    pub fn open_clip_g() -> TextEncoderConfig {
        TextEncoderConfig {
            vocab_size: 49408,
            hidden_size: 1280,
            intermediate_size: 5120,
            num_hidden_layers: 32,
            num_attention_heads: 20,
            max_position_embeddings: 77,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-5,
            projection_dim: Some(1280),
        }
    }

    /// Width of each attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }
}

/// A CLIP vision tower (transformers' `CLIPVisionModelWithProjection`): ViT-H/14 or ViT-bigG/14
/// for IP-Adapters.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImageEncoderConfig {
    /// Width of the hidden states (1280 ViT-H, 1664 ViT-bigG).
    pub hidden_size: usize,
    /// Width of each MLP (5120 ViT-H, 8192 ViT-bigG).
    pub intermediate_size: usize,
    /// Transformer layers (32 ViT-H, 48 ViT-bigG).
    pub num_hidden_layers: usize,
    /// Attention heads (16 in both).
    pub num_attention_heads: usize,
    /// MLP activation: `gelu` (the IP-Adapter encoders) or `quick_gelu`.
    pub hidden_act: String,
    /// Epsilon of the layer norms.
    pub layer_norm_eps: f64,
    /// Width of `image_embeds` (1024 ViT-H, 1280 ViT-bigG).
    pub projection_dim: usize,
    /// Input side in pixels (224).
    pub image_size: usize,
    /// Patch side in pixels (14).
    pub patch_size: usize,
}

/// The size of one component, by kind.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum ComponentConfig {
    /// The UNet's.
    Unet(UNetConfig),
    /// The VAE's.
    Vae(VaeConfig),
    /// A text encoder's.
    TextEncoder(TextEncoderConfig),
    /// A CLIP vision tower's.
    ImageEncoder(ImageEncoderConfig),
}
