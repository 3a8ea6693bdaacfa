//! CLIP text encoders: transformers' names (as stored in single files and diffusers folders) and
//! OpenCLIP's (the SDXL OpenCLIP-G tower) to the canonical transformers names.
//!
//! OpenCLIP fuses q/k/v into `attn.in_proj_weight [3C, C]` / `in_proj_bias [3C]` (rows in q, k, v
//! order, as `torch.nn.MultiheadAttention` does) and stores `text_projection` as `[C, P]`,
//! applied as `x @ P`; transformers has separate `q_proj/k_proj/v_proj` and a linear
//! `text_projection.weight [P, C]`.

use super::{Target, Transform, index_after, rename_prefix};

/// transformers' top-level module names that transformers 5 saves without `text_model.`.
const UNPREFIXED: &[(&str, &str)] = &[
    ("embeddings.", "text_model.embeddings."),
    ("encoder.", "text_model.encoder."),
    ("final_layer_norm.", "text_model.final_layer_norm."),
];

/// OpenCLIP's whole-tensor names, in order.
const OPEN_CLIP_FIXED: &[(&str, &str, Transform)] = &[
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight", Transform::Identity),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight", Transform::Identity),
    ("ln_final.weight", "text_model.final_layer_norm.weight", Transform::Identity),
    ("ln_final.bias", "text_model.final_layer_norm.bias", Transform::Identity),
    ("text_projection", "text_projection.weight", Transform::Transpose),
];

/// One residual block of OpenCLIP (`transformer.resblocks.{n}.` stripped) to a transformers
/// encoder layer (`text_model.encoder.layers.{n}.`).
const OPEN_CLIP_LAYER: &[(&str, &str)] = &[
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("attn.out_proj.", "self_attn.out_proj."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
];

/// The fused projections, split into three row ranges each.
const OPEN_CLIP_FUSED: &[(&str, [&str; 3])] = &[
    (
        "attn.in_proj_weight",
        ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"],
    ),
    ("attn.in_proj_bias", ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"]),
];

/// The canonical name (without component prefix) of a transformers CLIP key, with or without
/// `text_model.`.
pub fn map_transformers(rest: &str) -> Option<String> {
    if rest.starts_with("text_model.") || rest.starts_with("text_projection.") {
        return Some(rest.to_string());
    }
    rename_prefix(rest, UNPREFIXED)
}

/// The canonical tensors (without component prefix) of an OpenCLIP text-tower key.
pub fn map_open_clip(rest: &str) -> Option<Vec<Target>> {
    if let Some(&(_, name, transform)) = OPEN_CLIP_FIXED.iter().find(|&&(from, _, _)| from == rest) {
        return Some(vec![Target { name: name.to_string(), transform }]);
    }
    let (n, tail) = index_after(rest, "transformer.resblocks.")?;
    let layer = format!("text_model.encoder.layers.{n}.");
    if let Some(&(_, parts)) = OPEN_CLIP_FUSED.iter().find(|&&(from, _)| from == tail) {
        return Some(
            parts
                .iter()
                .enumerate()
                .map(|(index, part)| Target {
                    name: format!("{layer}{part}"),
                    transform: Transform::Rows { index, of: 3 },
                })
                .collect(),
        );
    }
    let name = rename_prefix(tail, OPEN_CLIP_LAYER)?;
    Some(vec![Target { name: format!("{layer}{name}"), transform: Transform::Identity }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_qkv_splits_in_three_rows() {
        let t = map_open_clip("transformer.resblocks.31.attn.in_proj_bias").unwrap();
        let names: Vec<_> = t.iter().map(|t| (t.name.as_str(), t.transform)).collect();
        assert_eq!(
            names,
            [
                ("text_model.encoder.layers.31.self_attn.q_proj.bias", Transform::Rows { index: 0, of: 3 }),
                ("text_model.encoder.layers.31.self_attn.k_proj.bias", Transform::Rows { index: 1, of: 3 }),
                ("text_model.encoder.layers.31.self_attn.v_proj.bias", Transform::Rows { index: 2, of: 3 }),
            ]
        );
        let t = map_open_clip("text_projection").unwrap();
        assert_eq!((t[0].name.as_str(), t[0].transform), ("text_projection.weight", Transform::Transpose));
        assert_eq!(
            map_open_clip("transformer.resblocks.0.mlp.c_fc.bias").unwrap()[0].name,
            "text_model.encoder.layers.0.mlp.fc1.bias"
        );
        assert_eq!(map_open_clip("visual.proj"), None);
    }

    #[test]
    fn transformers_names_with_and_without_text_model() {
        assert_eq!(
            map_transformers("embeddings.token_embedding.weight").as_deref(),
            Some("text_model.embeddings.token_embedding.weight")
        );
        assert_eq!(
            map_transformers("text_model.final_layer_norm.bias").as_deref(),
            Some("text_model.final_layer_norm.bias")
        );
        assert_eq!(map_transformers("text_projection.weight").as_deref(), Some("text_projection.weight"));
        assert_eq!(map_transformers("vision_model.post_layernorm.weight"), None);
    }
}
