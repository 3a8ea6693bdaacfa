//! Canonical tensor naming: pure functions over ordered tables that take a stored tensor name to
//! the one canonical name kiln's models use.
//!
//! The canonical name of a tensor is its diffusers / transformers name prefixed by the component:
//! `unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight`,
//! `vae.decoder.mid_block.attentions.0.to_q.weight`,
//! `text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight`,
//! `text_encoder_2.text_projection.weight`. [`grammar`](is_canonical) lists every such name.
//!
//! Single-file (original LDM / sgm) names go through [`single_file_key`]: a table of component
//! prefixes, then per-component tables (`unet`, `vae`, `clip` modules), first match wins. The UNet's
//! `input_blocks.{k}` / `output_blocks.{k}` indices need the block structure, which
//! [`scan_single_file`] reads from the key set first. Diffusers-folder names go through
//! [`diffusers_key`], which only renames legacy spellings. Some canonical tensors are not a plain
//! rename of a stored one: each [`Target`] carries a [`Transform`] saying how to produce it.
//!
//! Nothing here depends on hash order: tables are slices walked front to back.

mod clip;
mod grammar;
mod unet;
mod vae;

pub use grammar::{is_canonical, is_canonical_in};
pub use unet::unmap as unet_single_file_names;

/// Maps a key of a ControlNet in the original layout (ControlNet 1.0 / 1.1 files:
/// `control_model.` then the UNet encoder's `input_blocks` / `middle_block` / `time_embed`
/// names, `input_hint_block.*`, `zero_convs.N.0.*`, `middle_block_out.0.*`; the prefix is
/// optional) to its canonical `unet.` name: the hint convs at even indices 0, 2, .., 14 become
/// `controlnet_cond_embedding.conv_in`, `blocks.0..5` and `conv_out` (odd indices are SiLUs).
pub fn controlnet_single_file_key(key: &str, blocks: UnetBlocks) -> KeyKind {
    let rest = key.strip_prefix("control_model.").unwrap_or(key);
    let name = if let Some((i, tail)) = index_after(rest, "input_hint_block.") {
        match i {
            0 => Some(format!("controlnet_cond_embedding.conv_in.{tail}")),
            14 => Some(format!("controlnet_cond_embedding.conv_out.{tail}")),
            i if i % 2 == 0 => Some(format!("controlnet_cond_embedding.blocks.{}.{tail}", i / 2 - 1)),
            _ => None,
        }
    } else if let Some((n, tail)) = index_after(rest, "zero_convs.") {
        tail.strip_prefix("0.").map(|leaf| format!("controlnet_down_blocks.{n}.{leaf}"))
    } else if let Some(leaf) = rest.strip_prefix("middle_block_out.0.") {
        Some(format!("controlnet_mid_block.{leaf}"))
    } else {
        unet::map(rest, blocks)
    };
    finish(Component::Unet, name.map(identity))
}

/// The block grid of a ControlNet in the original layout, from its keys: one level per
/// downsampler (`input_blocks.K.0.op`) plus the last, and `input_blocks` = 1 + levels x
/// layers_per_block + (levels - 1).
pub fn scan_controlnet<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<UnetBlocks, String> {
    let (mut last_input, mut downsamplers) = (None::<usize>, std::collections::BTreeSet::new());
    for key in keys {
        let rest = key.strip_prefix("control_model.").unwrap_or(key);
        if let Some((k, tail)) = index_after(rest, "input_blocks.") {
            last_input = Some(last_input.map_or(k, |m| m.max(k)));
            if tail.starts_with("0.op.") {
                downsamplers.insert(k);
            }
        }
    }
    let inputs = last_input.ok_or("no input_blocks: not a ControlNet in the original layout")? + 1;
    let levels = downsamplers.len() + 1;
    match inputs.checked_sub(levels) {
        Some(n) if n % levels == 0 && n / levels > 0 => {
            Ok(UnetBlocks { levels, layers_per_block: n / levels })
        }
        _ => Err(format!(
            "{inputs} input blocks and {} downsamplers do not form a ControlNet encoder",
            levels - 1
        )),
    }
}

use super::Component;

/// How a canonical tensor is produced from the stored one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transform {
    /// The stored tensor as it is.
    Identity,
    /// The same elements under the canonical shape: a 1×1 convolution weight `[O, I, 1, 1]`
    /// read as a linear weight `[O, I]` (the VAE's mid-block attention). Free.
    Reshape,
    /// Rows `[index·n/of, (index+1)·n/of)` of the first dimension: one of the q/k/v parts of
    /// OpenCLIP's fused `in_proj_weight [3C, C]` / `in_proj_bias [3C]`. Contiguous, so still
    /// zero-copy.
    Rows {
        /// Which part, from 0.
        index: usize,
        /// How many equal parts the first dimension splits into.
        of: usize,
    },
    /// The transpose of a 2-D tensor: OpenCLIP stores `text_projection` as `[hidden, proj]`
    /// (applied as `x @ P`), transformers as a linear weight `[proj, hidden]`. Copies.
    Transpose,
}

impl Transform {
    /// The canonical shape produced from a stored tensor of shape `stored`, or why this
    /// transform cannot apply to it.
    pub fn canonical_shape(self, stored: &[usize]) -> Result<Vec<usize>, String> {
        match self {
            Transform::Identity => Ok(stored.to_vec()),
            Transform::Reshape => match *stored {
                [o, i, 1, 1] | [o, i] => Ok(vec![o, i]),
                _ => Err("expected a 1x1 convolution weight [O, I, 1, 1] or a linear weight [O, I]".into()),
            },
            Transform::Rows { index, of } => match stored.split_first() {
                Some((&n, rest)) if of > 0 && index < of && n % of == 0 => {
                    Ok(std::iter::once(n / of).chain(rest.iter().copied()).collect())
                }
                _ => Err(format!("cannot split the first dimension into {of} equal parts")),
            },
            Transform::Transpose => match *stored {
                [a, b] => Ok(vec![b, a]),
                _ => Err("expected a 2-D tensor to transpose".into()),
            },
        }
    }
}

/// One canonical tensor made from a stored one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The canonical name, with its component prefix.
    pub name: String,
    /// How to produce it from the stored tensor.
    pub transform: Transform,
}

/// What a stored tensor name is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Weights of a model: one canonical tensor, or several (a fused q/k/v split in three).
    Mapped(Vec<Target>),
    /// A known tensor that is not a model weight (a buffer, EMA or training state), with why.
    Ignored(&'static str),
    /// Nothing kiln knows.
    Unrecognised,
}

/// The block structure of a single file's UNet and VAE, read from its key set. The UNet's
/// `input_blocks` / `output_blocks` and the VAE decoder's `up` indices depend on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SingleFileStructure {
    /// The UNet's levels and resnets per level, when the file has a UNet.
    pub unet: Option<UnetBlocks>,
    /// The number of VAE resolution levels, when the file has a VAE decoder.
    pub vae_levels: Option<usize>,
}

/// A UNet's block grid: `levels` resolutions, `layers_per_block` resnets per down level (one more
/// per up level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnetBlocks {
    /// Resolution levels (4 for SD 1.5 and the SDXL refiner, 3 for SDXL base).
    pub levels: usize,
    /// Resnets per down-block level.
    pub layers_per_block: usize,
}

/// How a known non-weight tensor is recognised.
#[derive(Clone, Copy, Debug)]
enum Match {
    Exact(&'static str),
    Prefix(&'static str),
    Suffix(&'static str),
}

const SCHEDULE: &str = "DDPM noise-schedule buffer (kiln's schedulers compute the schedule)";

/// Known tensors that are not model weights, in order. Applied to both layouts before mapping.
const IGNORED: &[(Match, &str)] = &[
    (Match::Prefix("model_ema."), "EMA copy of the UNet kept for training"),
    (Match::Suffix(".position_ids"), "CLIP position-id buffer (0..n), recomputed"),
    (Match::Suffix(".logit_scale"), "CLIP contrastive-loss temperature, unused for text encoding"),
    (Match::Suffix(".attn_mask"), "OpenCLIP causal-mask buffer, recomputed"),
    (Match::Exact("betas"), SCHEDULE),
    (Match::Exact("alphas_cumprod"), SCHEDULE),
    (Match::Exact("alphas_cumprod_prev"), SCHEDULE),
    (Match::Exact("sqrt_alphas_cumprod"), SCHEDULE),
    (Match::Exact("sqrt_one_minus_alphas_cumprod"), SCHEDULE),
    (Match::Exact("log_one_minus_alphas_cumprod"), SCHEDULE),
    (Match::Exact("sqrt_recip_alphas_cumprod"), SCHEDULE),
    (Match::Exact("sqrt_recipm1_alphas_cumprod"), SCHEDULE),
    (Match::Exact("posterior_variance"), SCHEDULE),
    (Match::Exact("posterior_log_variance_clipped"), SCHEDULE),
    (Match::Exact("posterior_mean_coef1"), SCHEDULE),
    (Match::Exact("posterior_mean_coef2"), SCHEDULE),
    (Match::Exact("lvlb_weights"), SCHEDULE),
    (Match::Exact("logvar"), "training loss weighting buffer"),
    (Match::Exact("denoiser.sigmas"), "sgm sampler sigma table (kiln's schedulers compute it)"),
];

/// Why a stored tensor is known and ignored, or `None`.
pub fn ignored_reason(key: &str) -> Option<&'static str> {
    IGNORED.iter().find_map(|&(m, reason)| {
        let hit = match m {
            Match::Exact(s) => key == s,
            Match::Prefix(p) => key.starts_with(p),
            Match::Suffix(s) => key.ends_with(s),
        };
        hit.then_some(reason)
    })
}

/// Which converter handles the keys under a single-file prefix.
#[derive(Clone, Copy, Debug)]
enum Source {
    Unet,
    Vae,
    /// transformers' CLIP text model, as stored inside single files.
    HfClip(Component),
    /// OpenCLIP's text tower.
    OpenClip(Component),
}

/// Component prefixes of the single-file layout, in order; first match wins. In sgm (SDXL) files
/// an embedder holding `transformer.` is transformers' CLIP-L and one holding `model.` is
/// OpenCLIP-G: SDXL base has both (0 and 1), the refiner only OpenCLIP-G (as embedder 0).
const SINGLE_FILE_PREFIXES: &[(&str, Source)] = &[
    ("model.diffusion_model.", Source::Unet),
    ("first_stage_model.", Source::Vae),
    ("cond_stage_model.transformer.", Source::HfClip(Component::TextEncoder)),
    ("cond_stage_model.model.", Source::OpenClip(Component::TextEncoder)),
    ("conditioner.embedders.0.transformer.", Source::HfClip(Component::TextEncoder)),
    ("conditioner.embedders.0.model.", Source::OpenClip(Component::TextEncoder2)),
    ("conditioner.embedders.1.model.", Source::OpenClip(Component::TextEncoder2)),
];

/// Maps a key of a single-file checkpoint to its canonical tensor(s).
///
/// `structure` comes from [`scan_single_file`] over the same file's keys.
pub fn single_file_key(key: &str, structure: &SingleFileStructure) -> KeyKind {
    if let Some(reason) = ignored_reason(key) {
        return KeyKind::Ignored(reason);
    }
    let Some((rest, source)) =
        SINGLE_FILE_PREFIXES.iter().find_map(|&(p, s)| Some((key.strip_prefix(p)?, s)))
    else {
        return KeyKind::Unrecognised;
    };
    let (component, targets) = match source {
        Source::Unet => (Component::Unet, structure.unet.and_then(|b| unet::map(rest, b)).map(identity)),
        Source::Vae => {
            (Component::Vae, structure.vae_levels.and_then(|l| vae::map(rest, l)).map(|t| vec![t]))
        }
        Source::HfClip(c) => (c, clip::map_transformers(rest).map(identity)),
        Source::OpenClip(c) => (c, clip::map_open_clip(rest)),
    };
    finish(component, targets)
}

/// Maps a key of a diffusers component file (`unet/diffusion_pytorch_model.safetensors`, ...) to
/// its canonical tensor. Only legacy spellings are renamed: CLIP text models saved by
/// transformers 5 without `text_model.`, and the VAE attention's old `query/key/value/proj_attn`.
pub fn diffusers_key(component: Component, key: &str) -> KeyKind {
    if let Some(reason) = ignored_reason(key) {
        return KeyKind::Ignored(reason);
    }
    let name = match component {
        Component::Unet | Component::ImageEncoder => key.to_string(),
        Component::Vae => vae::legacy_diffusers(key),
        Component::TextEncoder | Component::TextEncoder2 => clip::map_transformers(key).unwrap_or_default(),
    };
    finish(component, Some(vec![Target { name, transform: Transform::Identity }]))
}

fn identity(name: String) -> Vec<Target> {
    vec![Target { name, transform: Transform::Identity }]
}

/// Prefixes the component and keeps the result only if every name is canonical.
fn finish(component: Component, targets: Option<Vec<Target>>) -> KeyKind {
    match targets {
        Some(targets)
            if !targets.is_empty() && targets.iter().all(|t| is_canonical_in(component, &t.name)) =>
        {
            KeyKind::Mapped(
                targets
                    .into_iter()
                    .map(|t| Target { name: format!("{}.{}", component.prefix(), t.name), ..t })
                    .collect(),
            )
        }
        _ => KeyKind::Unrecognised,
    }
}

/// Reads the UNet and VAE block structure from a single file's keys.
///
/// The UNet has `levels` = 1 + (number of `input_blocks.{k}.0.op` downsamplers) and
/// `output_blocks` = `levels × (layers_per_block + 1)`; `input_blocks` (conv_in included) has as
/// many. Errors say what does not add up.
pub fn scan_single_file<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<SingleFileStructure, String> {
    let mut downsamplers = std::collections::BTreeSet::new();
    let (mut inputs, mut outputs, mut vae_levels) = (None::<usize>, None::<usize>, None::<usize>);
    let max = |slot: &mut Option<usize>, v: usize| *slot = Some(slot.map_or(v, |m| m.max(v)));
    for key in keys {
        if let Some(rest) = key.strip_prefix("model.diffusion_model.") {
            if let Some((k, tail)) = index_after(rest, "input_blocks.") {
                max(&mut inputs, k);
                if tail.starts_with("0.op.") {
                    downsamplers.insert(k);
                }
            } else if let Some((k, _)) = index_after(rest, "output_blocks.") {
                max(&mut outputs, k);
            }
        } else if let Some(rest) = key.strip_prefix("first_stage_model.") {
            if let Some((i, _)) =
                index_after(rest, "decoder.up.").or_else(|| index_after(rest, "encoder.down."))
            {
                max(&mut vae_levels, i);
            }
        }
    }
    let unet = match (inputs, outputs) {
        (None, None) => None,
        (Some(last_in), Some(last_out)) => {
            let levels = downsamplers.len() + 1;
            let (n_in, n_out) = (last_in + 1, last_out + 1);
            if n_out % levels != 0 || n_out / levels < 2 || n_in != n_out {
                return Err(format!(
                    "{levels} levels ({} downsamplers), {n_in} input blocks and {n_out} output blocks do not \
                     form a levels x (layers_per_block + 1) grid",
                    levels - 1
                ));
            }
            Some(UnetBlocks { levels, layers_per_block: n_out / levels - 1 })
        }
        (Some(_), None) => return Err("input_blocks without output_blocks".into()),
        (None, Some(_)) => return Err("output_blocks without input_blocks".into()),
    };
    Ok(SingleFileStructure { unet, vae_levels: vae_levels.map(|m| m + 1) })
}

/// For `s` = `{prefix}{n}.{tail}`, returns `(n, tail)`.
fn index_after<'a>(s: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = s.strip_prefix(prefix)?;
    let (digits, tail) = rest.split_once('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, tail))
}

/// Rewrites the start of `s` by the first row of `table` whose source prefix it has.
fn rename_prefix(s: &str, table: &[(&str, &str)]) -> Option<String> {
    table.iter().find_map(|&(from, to)| s.strip_prefix(from).map(|tail| format!("{to}{tail}")))
}
