//! The canonical naming, written down as a grammar: every name a supported model's tensor can
//! have, per component, as dotted patterns.
//!
//! A pattern is a dotted sequence of items: a literal segment, `#` (any decimal index), or a
//! group `(a|b.c|…)` of alternative dotted sub-patterns. Names produced by the single-file tables
//! and names read from a diffusers folder are both checked against these patterns; whatever
//! fails is reported as unrecognised rather than passed on to the models.

use crate::checkpoint::Component;

/// The UNet's canonical names (diffusers' `UNet2DConditionModel`).
const UNET: &[&str] = &[
    "conv_in.(weight|bias)",
    "(time_embedding|add_embedding).(linear_1|linear_2).(weight|bias)",
    "(down_blocks.#|up_blocks.#|mid_block).resnets.#.(norm1|conv1|time_emb_proj|norm2|conv2|conv_shortcut).(weight|bias)",
    "(down_blocks.#|up_blocks.#|mid_block).attentions.#.(norm|proj_in|proj_out).(weight|bias)",
    "(down_blocks.#|up_blocks.#|mid_block).attentions.#.transformer_blocks.#.(norm1|norm2|norm3).(weight|bias)",
    "(down_blocks.#|up_blocks.#|mid_block).attentions.#.transformer_blocks.#.(attn1|attn2).(to_q|to_k|to_v).weight",
    "(down_blocks.#|up_blocks.#|mid_block).attentions.#.transformer_blocks.#.(attn1|attn2).to_out.0.(weight|bias)",
    "(down_blocks.#|up_blocks.#|mid_block).attentions.#.transformer_blocks.#.ff.(net.0.proj|net.2).(weight|bias)",
    "down_blocks.#.downsamplers.0.conv.(weight|bias)",
    "up_blocks.#.upsamplers.0.conv.(weight|bias)",
    "(conv_norm_out|conv_out).(weight|bias)",
    // A ControlNet's own tensors (opened with `Checkpoint::open_controlnet`): the hint
    // embedding and the 1x1 convs its residuals leave through.
    "controlnet_cond_embedding.(conv_in|blocks.#|conv_out).(weight|bias)",
    "(controlnet_down_blocks.#|controlnet_mid_block).(weight|bias)",
];

/// The VAE's canonical names (diffusers' `AutoencoderKL`, current attention naming).
const VAE: &[&str] = &[
    "(encoder|decoder).(conv_in|conv_norm_out|conv_out).(weight|bias)",
    "(encoder.down_blocks.#|decoder.up_blocks.#|encoder.mid_block|decoder.mid_block).resnets.#.(norm1|conv1|norm2|conv2|conv_shortcut).(weight|bias)",
    "encoder.down_blocks.#.downsamplers.0.conv.(weight|bias)",
    "decoder.up_blocks.#.upsamplers.0.conv.(weight|bias)",
    "(encoder|decoder).mid_block.attentions.0.(group_norm|to_q|to_k|to_v|to_out.0).(weight|bias)",
    "(quant_conv|post_quant_conv).(weight|bias)",
];

/// A CLIP text encoder's canonical names (transformers' `CLIPTextModel` and
/// `CLIPTextModelWithProjection`, with the `text_model.` prefix).
const TEXT: &[&str] = &[
    "text_model.embeddings.(token_embedding|position_embedding).weight",
    "text_model.encoder.layers.#.(layer_norm1|layer_norm2).(weight|bias)",
    "text_model.encoder.layers.#.self_attn.(q_proj|k_proj|v_proj|out_proj).(weight|bias)",
    "text_model.encoder.layers.#.mlp.(fc1|fc2).(weight|bias)",
    "text_model.final_layer_norm.(weight|bias)",
    "text_projection.weight",
];

/// A CLIP vision tower's canonical names (transformers' `CLIPVisionModelWithProjection`).
const VISION: &[&str] = &[
    "vision_model.embeddings.(class_embedding|patch_embedding.weight|position_embedding.weight)",
    "vision_model.(pre_layrnorm|post_layernorm).(weight|bias)",
    "vision_model.encoder.layers.#.(layer_norm1|layer_norm2).(weight|bias)",
    "vision_model.encoder.layers.#.self_attn.(q_proj|k_proj|v_proj|out_proj).(weight|bias)",
    "vision_model.encoder.layers.#.mlp.(fc1|fc2).(weight|bias)",
    "visual_projection.weight",
];

/// Whether `name` (without the component prefix) is a canonical tensor name of `component`.
pub fn is_canonical_in(component: Component, name: &str) -> bool {
    let table = match component {
        Component::Unet => UNET,
        Component::Vae => VAE,
        Component::TextEncoder | Component::TextEncoder2 => TEXT,
        Component::ImageEncoder => VISION,
    };
    let segments: Vec<&str> = name.split('.').collect();
    table.iter().any(|p| matches(p, &segments))
}

/// Whether `name` (with its component prefix, `unet.conv_in.weight`) is canonical.
pub fn is_canonical(name: &str) -> bool {
    Component::split_name(name).is_some_and(|(c, rest)| is_canonical_in(c, rest))
}

/// One item of a parsed pattern.
#[derive(Debug)]
enum Item<'p> {
    Literal(&'p str),
    Index,
    Group(Vec<Vec<Item<'p>>>),
}

/// Whether the dotted `segments` match `pattern` exactly.
fn matches(pattern: &str, segments: &[&str]) -> bool {
    let (items, rest) = parse_seq(pattern);
    debug_assert!(rest.is_empty(), "unbalanced pattern {pattern}");
    match_seq(&items, segments).contains(&segments.len())
}

/// Parses items up to the end of `p` or an unmatched `|` / `)`; returns them and the rest of `p`.
fn parse_seq(mut p: &str) -> (Vec<Item<'_>>, &str) {
    let mut items = Vec::new();
    loop {
        if let Some(inner) = p.strip_prefix('(') {
            let mut alternatives = Vec::new();
            let mut rest = inner;
            loop {
                let (alt, after) = parse_seq(rest);
                alternatives.push(alt);
                match after.as_bytes().first() {
                    Some(b'|') => rest = &after[1..],
                    _ => {
                        rest = after.strip_prefix(')').unwrap_or(after);
                        break;
                    }
                }
            }
            items.push(Item::Group(alternatives));
            p = rest;
        } else {
            let end = p.find(['.', '|', ')']).unwrap_or(p.len());
            let seg = &p[..end];
            items.push(if seg == "#" { Item::Index } else { Item::Literal(seg) });
            p = &p[end..];
        }
        match p.strip_prefix('.') {
            Some(rest) => p = rest,
            None => return (items, p),
        }
    }
}

/// Every number of leading `segments` that `items` can consume.
fn match_seq(items: &[Item<'_>], segments: &[&str]) -> Vec<usize> {
    let mut positions = vec![0usize];
    for item in items {
        let mut next = Vec::new();
        for &at in &positions {
            let Some(rest) = segments.get(at..) else { continue };
            match item {
                Item::Literal(l) => {
                    if rest.first() == Some(l) {
                        next.push(at + 1);
                    }
                }
                Item::Index => {
                    if rest.first().is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) {
                        next.push(at + 1);
                    }
                }
                Item::Group(alternatives) => {
                    for alt in alternatives {
                        next.extend(match_seq(alt, rest).into_iter().map(|n| at + n));
                    }
                }
            }
        }
        next.sort_unstable();
        next.dedup();
        positions = next;
    }
    positions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names_only() {
        let m = |p: &str, n: &str| matches(p, &n.split('.').collect::<Vec<_>>());
        assert!(m("a.#.(b|c.d).e", "a.12.c.d.e"));
        assert!(m("a.#.(b|c.d).e", "a.0.b.e"));
        assert!(!m("a.#.(b|c.d).e", "a.x.b.e"));
        assert!(!m("a.#.(b|c.d).e", "a.1.b.e.f"));
        assert!(!m("a.#.(b|c.d).e", "a.1.c.e"));
        assert!(m("(x|x.y).z", "x.y.z"));
    }

    #[test]
    fn canonical_examples() {
        for ok in [
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
            "unet.mid_block.resnets.1.time_emb_proj.bias",
            "unet.up_blocks.0.upsamplers.0.conv.weight",
            "unet.add_embedding.linear_2.weight",
            "vae.decoder.mid_block.attentions.0.to_out.0.weight",
            "vae.encoder.down_blocks.3.resnets.1.conv_shortcut.weight",
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight",
            "text_encoder_2.text_projection.weight",
        ] {
            assert!(is_canonical(ok), "{ok}");
        }
        for bad in [
            "unet.down_blocks.1.attentions.0.lora_up.weight",
            "vae.decoder.mid_block.attentions.0.query.weight",
            "vae.decoder.up_blocks.0.resnets.0.time_emb_proj.weight",
            "text_encoder.embeddings.token_embedding.weight",
            "model.diffusion_model.input_blocks.0.0.weight",
        ] {
            assert!(!is_canonical(bad), "{bad}");
        }
    }
}
