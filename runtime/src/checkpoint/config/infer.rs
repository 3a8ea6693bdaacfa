//! What the weights say about a component's size, read from canonical tensor shapes; configs
//! built from it (single files) or checked against it (diffusers folders).
//!
//! Widths come from convolution and linear shapes, levels and depths from counting block
//! indices, the context width from `attn2.to_k`, linear vs convolutional projections from
//! `proj_in`'s rank. Head counts, activations and the VAE scaling factor are not in the weights:
//! they come from the family's published config.

use std::collections::BTreeSet;
use std::path::Path;

use super::{ImageEncoderConfig, TextEncoderConfig, UNetConfig, VaeConfig};
use crate::checkpoint::Component;
use crate::checkpoint::error::CheckpointError;
use crate::checkpoint::family::{Family, Shapes};

/// Looks up canonical shapes, with a typed error for a missing tensor.
struct Weights<'a> {
    path: &'a Path,
    shapes: &'a Shapes,
}

impl Weights<'_> {
    fn dim(&self, name: &str, axis: usize) -> Result<usize, CheckpointError> {
        self.opt_dim(name, axis)?
            .ok_or_else(|| CheckpointError::MissingTensor { path: self.path.into(), name: name.into() })
    }

    /// The size of `axis` of `name`, `None` if the tensor is absent, an error if it has too few axes.
    fn opt_dim(&self, name: &str, axis: usize) -> Result<Option<usize>, CheckpointError> {
        let Some(shape) = self.shapes.get(name) else { return Ok(None) };
        shape.get(axis).copied().map(Some).ok_or_else(|| CheckpointError::BadShape {
            path: self.path.into(),
            tensor: name.into(),
            shape: shape.clone(),
            reason: format!("expected at least {} dimensions", axis + 1),
        })
    }

    fn has(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    /// The indices `n` of names `{prefix}{n}.…`, which must run 0..len without holes.
    fn count(&self, prefix: &str) -> Result<usize, CheckpointError> {
        let found: BTreeSet<usize> = self
            .shapes
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, _)| k[prefix.len()..].split_once('.').and_then(|(n, _)| n.parse().ok()))
            .collect();
        match found.iter().enumerate().find(|&(i, &n)| i != n) {
            None => Ok(found.len()),
            Some((i, _)) => {
                Err(CheckpointError::MissingTensor { path: self.path.into(), name: format!("{prefix}{i}.*") })
            }
        }
    }
}

/// What a UNet's weights say about its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnetFacts {
    /// Channels per level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per down level.
    pub layers_per_block: usize,
    /// Transformer depth per down level, `None` for a level without attention.
    pub down_attention: Vec<Option<usize>>,
    /// Transformer depth of each attention of each up block (deepest first), `None` for a
    /// block without attention.
    pub up_attention: Vec<Option<Vec<usize>>>,
    /// The mid block's transformer depth, `None` without mid-block attention.
    pub mid_attention: Option<usize>,
    /// `conv_in`'s input channels.
    pub in_channels: usize,
    /// `conv_out`'s output channels.
    pub out_channels: usize,
    /// The context width, if there is cross-attention.
    pub cross_attention_dim: Option<usize>,
    /// Whether `proj_in` is a linear (rank 2) rather than a 1×1 conv.
    pub use_linear_projection: Option<bool>,
    /// The added embedding's input width.
    pub addition_embed_inputs: Option<usize>,
}

/// Reads a UNet's facts from canonical shapes (`unet.` names).
pub fn unet_facts(path: &Path, shapes: &Shapes) -> Result<UnetFacts, CheckpointError> {
    let w = Weights { path, shapes };
    let levels = w.count("unet.down_blocks.")?;
    let block_out_channels = (0..levels)
        .map(|l| w.dim(&format!("unet.down_blocks.{l}.resnets.0.conv1.weight"), 0))
        .collect::<Result<Vec<_>, _>>()?;
    let depth = |prefix: String| -> Result<Option<usize>, CheckpointError> {
        if w.count(&format!("{prefix}attentions."))? == 0 {
            return Ok(None);
        }
        w.count(&format!("{prefix}attentions.0.transformer_blocks.")).map(Some)
    };
    let down_attention =
        (0..levels).map(|l| depth(format!("unet.down_blocks.{l}."))).collect::<Result<Vec<_>, _>>()?;
    let up_levels = w.count("unet.up_blocks.")?;
    let up_depths = |i: usize| -> Result<Option<Vec<usize>>, CheckpointError> {
        let prefix = format!("unet.up_blocks.{i}.attentions.");
        let n = w.count(&prefix)?;
        if n == 0 {
            return Ok(None);
        }
        (0..n)
            .map(|j| w.count(&format!("{prefix}{j}.transformer_blocks.")))
            .collect::<Result<_, _>>()
            .map(Some)
    };
    let up_attention = (0..up_levels).map(up_depths).collect::<Result<Vec<_>, _>>()?;
    let projection_rank = shapes
        .iter()
        .find(|(k, _)| k.starts_with("unet.") && k.ends_with(".proj_in.weight"))
        .map(|(_, s)| s.len());
    let context = shapes
        .iter()
        .find(|(k, s)| k.starts_with("unet.") && k.ends_with(".attn2.to_k.weight") && s.len() == 2)
        .map(|(_, s)| s[1]);
    Ok(UnetFacts {
        layers_per_block: w.count("unet.down_blocks.0.resnets.")?,
        mid_attention: depth("unet.mid_block.".into())?,
        in_channels: w.dim("unet.conv_in.weight", 1)?,
        // A ControlNet has no conv_out: its output width is its input's.
        out_channels: match w.opt_dim("unet.conv_out.weight", 0)? {
            Some(c) => c,
            None => w.dim("unet.conv_in.weight", 1)?,
        },
        cross_attention_dim: context,
        use_linear_projection: projection_rank.map(|r| r == 2),
        addition_embed_inputs: w.opt_dim("unet.add_embedding.linear_1.weight", 1)?,
        block_out_channels,
        down_attention,
        up_attention,
    })
}

/// A UNet config from the weights, with the family's published config for the rest.
///
/// Heads: the published count where the widths are the published ones; otherwise SD 1.5's
/// 8 heads per level, or SDXL's head width of 64 (at least one head).
pub fn unet_config(path: &Path, family: Family, shapes: &Shapes) -> Result<UNetConfig, CheckpointError> {
    let facts = unet_facts(path, shapes)?;
    let published = UNetConfig::published(family);
    let levels = facts.block_out_channels.len();
    let same_grid = published.block_out_channels == facts.block_out_channels;
    let mut depth = if same_grid { published.transformer_layers_per_block.clone() } else { vec![1; levels] };
    for (d, fact) in depth.iter_mut().zip(&facts.down_attention) {
        if let Some(n) = fact {
            *d = *n;
        }
    }
    if let (Some(mid), Some(last)) = (facts.mid_attention, depth.last_mut()) {
        *last = mid;
    }
    // Up depths as the weights have them; blocks without attention take the reverse of the down
    // depths, as diffusers' default does.
    let up_depths: Vec<Vec<usize>> = facts
        .up_attention
        .iter()
        .enumerate()
        .map(|(i, found)| match found {
            Some(d) => d.clone(),
            None => vec![depth[levels.saturating_sub(i + 1)]; facts.layers_per_block + 1],
        })
        .collect();
    let heads = if same_grid {
        published.num_attention_heads.clone()
    } else if family.is_sdxl() {
        facts.block_out_channels.iter().map(|c| (c / 64).max(1)).collect()
    } else {
        vec![8; levels]
    };
    let block_type =
        |attn: bool, with: &str, without: &str| if attn { with.to_string() } else { without.to_string() };
    let mut config = UNetConfig {
        in_channels: facts.in_channels,
        out_channels: facts.out_channels,
        down_block_types: facts
            .down_attention
            .iter()
            .map(|a| block_type(a.is_some(), "CrossAttnDownBlock2D", "DownBlock2D"))
            .collect(),
        up_block_types: facts
            .up_attention
            .iter()
            .map(|a| block_type(a.is_some(), "CrossAttnUpBlock2D", "UpBlock2D"))
            .collect(),
        mid_block_type: Some(block_type(
            facts.mid_attention.is_some(),
            "UNetMidBlock2DCrossAttn",
            "UNetMidBlock2D",
        )),
        block_out_channels: facts.block_out_channels,
        layers_per_block: facts.layers_per_block,
        transformer_layers_per_block: depth,
        reverse_transformer_layers_per_block: Some(up_depths),
        cross_attention_dim: facts.cross_attention_dim.unwrap_or(published.cross_attention_dim),
        num_attention_heads: heads,
        use_linear_projection: facts.use_linear_projection.unwrap_or(published.use_linear_projection),
        projection_class_embeddings_input_dim: facts.addition_embed_inputs,
        addition_embed_type: facts.addition_embed_inputs.and(published.addition_embed_type.clone()),
        addition_time_embed_dim: facts.addition_embed_inputs.and(published.addition_time_embed_dim),
        ..published
    };
    config.normalize_up_depths();
    Ok(config)
}

/// Checks a UNet config (read from `config_path`) against the weights.
pub fn check_unet(config_path: &Path, c: &UNetConfig, facts: &UnetFacts) -> Result<(), CheckpointError> {
    let check = Check { path: config_path };
    check.eq("block_out_channels", &c.block_out_channels, &facts.block_out_channels)?;
    check.eq("in_channels", &c.in_channels, &facts.in_channels)?;
    check.eq("out_channels", &c.out_channels, &facts.out_channels)?;
    check.eq("layers_per_block", &c.layers_per_block, &facts.layers_per_block)?;
    if let Some(ctx) = facts.cross_attention_dim {
        check.eq("cross_attention_dim", &c.cross_attention_dim, &ctx)?;
    }
    if let Some(linear) = facts.use_linear_projection {
        check.eq("use_linear_projection", &c.use_linear_projection, &linear)?;
    }
    check.eq(
        "projection_class_embeddings_input_dim",
        &c.projection_class_embeddings_input_dim,
        &facts.addition_embed_inputs,
    )?;
    let down: Vec<bool> = (0..c.levels()).map(|l| c.down_has_attention(l)).collect();
    let down_facts: Vec<bool> = facts.down_attention.iter().map(Option::is_some).collect();
    check.eq("down_block_types (cross-attention per level)", &down, &down_facts)?;
    let up: Vec<bool> = c.up_block_types.iter().map(|t| t.contains("CrossAttn")).collect();
    let up_facts: Vec<bool> = facts.up_attention.iter().map(Option::is_some).collect();
    check.eq("up_block_types (cross-attention per level)", &up, &up_facts)?;
    for (level, fact) in facts.down_attention.iter().enumerate() {
        if let Some(n) = fact {
            check.eq(
                &format!("transformer_layers_per_block[{level}]"),
                &c.transformer_layers_per_block[level],
                n,
            )?;
        }
    }
    if let Some(mid) = facts.mid_attention {
        check.eq(
            "transformer_layers_per_block (mid block: last entry)",
            &c.mid_transformer_layers(),
            &mid,
        )?;
    }
    for (i, fact) in facts.up_attention.iter().enumerate() {
        if let Some(depths) = fact {
            check.eq(
                &format!("reverse_transformer_layers_per_block[{i}] (transformer blocks per attention)"),
                &c.up_transformer_layers(i),
                depths,
            )?;
        }
    }
    let mid_type = c.mid_block_type.as_deref();
    let mid_attends = mid_type == Some("UNetMidBlock2DCrossAttn");
    check.eq("mid_block_type (attention in the mid block)", &mid_attends, &facts.mid_attention.is_some())?;
    for (level, (&width, &heads)) in c.block_out_channels.iter().zip(&c.num_attention_heads).enumerate() {
        if heads == 0 || width % heads != 0 {
            return Err(check.mismatch(
                &format!("num_attention_heads[{level}]"),
                heads.to_string(),
                format!("a divisor of the level's {width} channels"),
            ));
        }
    }
    Ok(())
}

/// What a VAE's weights say about its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaeFacts {
    /// Channels per encoder level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level.
    pub layers_per_block: usize,
    /// Decoder levels.
    pub decoder_levels: usize,
    /// Latent channels (the decoder's input).
    pub latent_channels: usize,
    /// Image channels in.
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Whether `quant_conv` is present.
    pub quant_conv: bool,
    /// Whether `post_quant_conv` is present.
    pub post_quant_conv: bool,
}

/// Reads a VAE's facts from canonical shapes (`vae.` names).
pub fn vae_facts(path: &Path, shapes: &Shapes) -> Result<VaeFacts, CheckpointError> {
    let w = Weights { path, shapes };
    let levels = w.count("vae.encoder.down_blocks.")?;
    Ok(VaeFacts {
        block_out_channels: (0..levels)
            .map(|l| w.dim(&format!("vae.encoder.down_blocks.{l}.resnets.0.conv1.weight"), 0))
            .collect::<Result<_, _>>()?,
        layers_per_block: w.count("vae.encoder.down_blocks.0.resnets.")?,
        decoder_levels: w.count("vae.decoder.up_blocks.")?,
        latent_channels: w.dim("vae.decoder.conv_in.weight", 1)?,
        in_channels: w.dim("vae.encoder.conv_in.weight", 1)?,
        out_channels: w.dim("vae.decoder.conv_out.weight", 0)?,
        quant_conv: w.has("vae.quant_conv.weight"),
        post_quant_conv: w.has("vae.post_quant_conv.weight"),
    })
}

/// A VAE config from the weights, with the family's scaling factor and upcast flag.
pub fn vae_config(path: &Path, family: Family, shapes: &Shapes) -> Result<VaeConfig, CheckpointError> {
    let facts = vae_facts(path, shapes)?;
    let levels = facts.block_out_channels.len();
    Ok(VaeConfig {
        in_channels: facts.in_channels,
        out_channels: facts.out_channels,
        latent_channels: facts.latent_channels,
        block_out_channels: facts.block_out_channels,
        layers_per_block: facts.layers_per_block,
        down_block_types: vec!["DownEncoderBlock2D".into(); levels],
        up_block_types: vec!["UpDecoderBlock2D".into(); levels],
        use_quant_conv: facts.quant_conv,
        use_post_quant_conv: facts.post_quant_conv,
        ..VaeConfig::published(family)
    })
}

/// Checks a VAE config (read from `config_path`) against the weights.
pub fn check_vae(config_path: &Path, c: &VaeConfig, facts: &VaeFacts) -> Result<(), CheckpointError> {
    let check = Check { path: config_path };
    check.eq("block_out_channels", &c.block_out_channels, &facts.block_out_channels)?;
    check.eq("block_out_channels (decoder levels)", &c.levels(), &facts.decoder_levels)?;
    check.eq("layers_per_block", &c.layers_per_block, &facts.layers_per_block)?;
    check.eq("latent_channels", &c.latent_channels, &facts.latent_channels)?;
    check.eq("in_channels", &c.in_channels, &facts.in_channels)?;
    check.eq("out_channels", &c.out_channels, &facts.out_channels)?;
    check.eq("use_quant_conv", &c.use_quant_conv, &facts.quant_conv)?;
    check.eq("use_post_quant_conv", &c.use_post_quant_conv, &facts.post_quant_conv)
}

/// What a CLIP text encoder's weights say about its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextFacts {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Positions.
    pub max_position_embeddings: usize,
    /// Projection width, when the encoder has a `text_projection`.
    pub projection_dim: Option<usize>,
}

/// Reads a text encoder's facts from canonical shapes (`text_encoder.` or `text_encoder_2.`).
pub fn text_facts(path: &Path, component: Component, shapes: &Shapes) -> Result<TextFacts, CheckpointError> {
    let w = Weights { path, shapes };
    let p = component.prefix();
    Ok(TextFacts {
        vocab_size: w.dim(&format!("{p}.text_model.embeddings.token_embedding.weight"), 0)?,
        hidden_size: w.dim(&format!("{p}.text_model.embeddings.token_embedding.weight"), 1)?,
        max_position_embeddings: w.dim(&format!("{p}.text_model.embeddings.position_embedding.weight"), 0)?,
        num_hidden_layers: w.count(&format!("{p}.text_model.encoder.layers."))?,
        intermediate_size: w.dim(&format!("{p}.text_model.encoder.layers.0.mlp.fc1.weight"), 0)?,
        projection_dim: w.opt_dim(&format!("{p}.text_projection.weight"), 0)?,
    })
}

/// A text encoder config from the weights: CLIP-L's published config for `text_encoder`,
/// OpenCLIP-G's for `text_encoder_2`, for heads (head width 64 when the width differs) and
/// activation.
pub fn text_config(
    path: &Path,
    component: Component,
    shapes: &Shapes,
) -> Result<TextEncoderConfig, CheckpointError> {
    let facts = text_facts(path, component, shapes)?;
    let published = if component == Component::TextEncoder2 {
        TextEncoderConfig::open_clip_g()
    } else {
        TextEncoderConfig::clip_l()
    };
    let heads = if facts.hidden_size == published.hidden_size {
        published.num_attention_heads
    } else {
        (facts.hidden_size / 64).max(1)
    };
    Ok(TextEncoderConfig {
        vocab_size: facts.vocab_size,
        hidden_size: facts.hidden_size,
        intermediate_size: facts.intermediate_size,
        num_hidden_layers: facts.num_hidden_layers,
        num_attention_heads: heads,
        max_position_embeddings: facts.max_position_embeddings,
        projection_dim: facts.projection_dim,
        ..published
    })
}

/// Checks a text encoder config (read from `config_path`) against the weights.
pub fn check_text(
    config_path: &Path,
    c: &TextEncoderConfig,
    facts: &TextFacts,
) -> Result<(), CheckpointError> {
    let check = Check { path: config_path };
    check.eq("vocab_size", &c.vocab_size, &facts.vocab_size)?;
    check.eq("hidden_size", &c.hidden_size, &facts.hidden_size)?;
    check.eq("intermediate_size", &c.intermediate_size, &facts.intermediate_size)?;
    check.eq("num_hidden_layers", &c.num_hidden_layers, &facts.num_hidden_layers)?;
    check.eq("max_position_embeddings", &c.max_position_embeddings, &facts.max_position_embeddings)?;
    check.eq("projection_dim", &c.projection_dim, &facts.projection_dim)?;
    if c.num_attention_heads == 0 || c.hidden_size % c.num_attention_heads != 0 {
        return Err(check.mismatch(
            "num_attention_heads",
            c.num_attention_heads.to_string(),
            format!("a divisor of hidden_size {}", c.hidden_size),
        ));
    }
    Ok(())
}

/// Compares config values with weight facts, producing [`CheckpointError::ConfigMismatch`].
struct Check<'a> {
    path: &'a Path,
}

impl Check<'_> {
    fn eq<T: PartialEq + std::fmt::Debug>(
        &self,
        field: &str,
        config: &T,
        weights: &T,
    ) -> Result<(), CheckpointError> {
        if config == weights {
            Ok(())
        } else {
            Err(self.mismatch(field, format!("{config:?}"), format!("{weights:?}")))
        }
    }

    fn mismatch(&self, field: &str, config: String, weights: String) -> CheckpointError {
        CheckpointError::ConfigMismatch { path: self.path.into(), field: field.into(), config, weights }
    }
}

/// What a CLIP vision tower's weights say about its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEncoderFacts {
    /// Hidden width (the class embedding's).
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// `image_embeds` width.
    pub projection_dim: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Input side: patch side x patches per side (positions = side² + 1).
    pub image_size: usize,
}

impl ImageEncoderFacts {
    /// A config with these sizes, `heads` attention heads and the activation `act`.
    pub fn config(&self, heads: usize, act: &str) -> ImageEncoderConfig {
        ImageEncoderConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: heads,
            hidden_act: act.into(),
            layer_norm_eps: 1e-5,
            projection_dim: self.projection_dim,
            image_size: self.image_size,
            patch_size: self.patch_size,
        }
    }
}

/// Reads an image encoder's facts from canonical shapes (`image_encoder.` names).
pub fn image_encoder_facts(path: &Path, shapes: &Shapes) -> Result<ImageEncoderFacts, CheckpointError> {
    let w = Weights { path, shapes };
    let v = "image_encoder.vision_model.";
    let patch_size = w.dim(&format!("{v}embeddings.patch_embedding.weight"), 2)?;
    let positions = w.dim(&format!("{v}embeddings.position_embedding.weight"), 0)?;
    let side = (1..=positions).take_while(|s| s * s < positions).last().map_or(0, |s| s);
    if side * side + 1 != positions {
        return Err(CheckpointError::BadShape {
            path: path.into(),
            tensor: format!("{v}embeddings.position_embedding.weight"),
            shape: shapes
                .get(&format!("{v}embeddings.position_embedding.weight"))
                .cloned()
                .unwrap_or_default(),
            reason: format!("{positions} positions are not a square grid of patches plus the class token"),
        });
    }
    Ok(ImageEncoderFacts {
        hidden_size: w.dim(&format!("{v}embeddings.class_embedding"), 0)?,
        intermediate_size: w.dim(&format!("{v}encoder.layers.0.mlp.fc1.weight"), 0)?,
        num_hidden_layers: w.count(&format!("{v}encoder.layers."))?,
        projection_dim: w.dim("image_encoder.visual_projection.weight", 0)?,
        patch_size,
        image_size: side * patch_size,
    })
}

/// Checks an image encoder config (read from `config_path`) against the weights.
pub fn check_image_encoder(
    config_path: &Path,
    c: &ImageEncoderConfig,
    facts: &ImageEncoderFacts,
) -> Result<(), CheckpointError> {
    let check = Check { path: config_path };
    check.eq("hidden_size", &c.hidden_size, &facts.hidden_size)?;
    check.eq("intermediate_size", &c.intermediate_size, &facts.intermediate_size)?;
    check.eq("num_hidden_layers", &c.num_hidden_layers, &facts.num_hidden_layers)?;
    check.eq("projection_dim", &c.projection_dim, &facts.projection_dim)?;
    check.eq("patch_size", &c.patch_size, &facts.patch_size)?;
    check.eq("image_size", &c.image_size, &facts.image_size)?;
    if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
        return Err(check.mismatch(
            "num_attention_heads",
            c.num_attention_heads.to_string(),
            format!("a divisor of hidden_size {}", c.hidden_size),
        ));
    }
    Ok(())
}
