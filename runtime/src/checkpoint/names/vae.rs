//! The VAE's single-file names (`first_stage_model.` stripped) to diffusers names, and the
//! renames of diffusers' own legacy VAE attention names.
//!
//! LDM's decoder numbers `up.{i}` from the highest resolution (`up.0`, 128 channels) while
//! diffusers' `up_blocks.0` is the lowest: `up.{i}` becomes `up_blocks.{levels-1-i}`. The
//! mid-block attention is a set of 1×1 convolutions in LDM and linears in diffusers.

use super::{Target, Transform, index_after, rename_prefix};

/// How the tail after a fixed prefix is renamed.
#[derive(Clone, Copy, Debug)]
enum Tail {
    Same,
    Resnet,
    Attention,
}

/// Fixed prefixes, in order; first match wins.
const FIXED: &[(&str, &str, Tail)] = &[
    ("encoder.conv_in.", "encoder.conv_in.", Tail::Same),
    ("encoder.mid.block_1.", "encoder.mid_block.resnets.0.", Tail::Resnet),
    ("encoder.mid.attn_1.", "encoder.mid_block.attentions.0.", Tail::Attention),
    ("encoder.mid.block_2.", "encoder.mid_block.resnets.1.", Tail::Resnet),
    ("encoder.norm_out.", "encoder.conv_norm_out.", Tail::Same),
    ("encoder.conv_out.", "encoder.conv_out.", Tail::Same),
    ("quant_conv.", "quant_conv.", Tail::Same),
    ("post_quant_conv.", "post_quant_conv.", Tail::Same),
    ("decoder.conv_in.", "decoder.conv_in.", Tail::Same),
    ("decoder.mid.block_1.", "decoder.mid_block.resnets.0.", Tail::Resnet),
    ("decoder.mid.attn_1.", "decoder.mid_block.attentions.0.", Tail::Attention),
    ("decoder.mid.block_2.", "decoder.mid_block.resnets.1.", Tail::Resnet),
    ("decoder.norm_out.", "decoder.conv_norm_out.", Tail::Same),
    ("decoder.conv_out.", "decoder.conv_out.", Tail::Same),
];

/// A resnet's submodules: only the shortcut is renamed.
const RESNET: &[(&str, &str)] = &[
    ("norm1.", "norm1."),
    ("conv1.", "conv1."),
    ("norm2.", "norm2."),
    ("conv2.", "conv2."),
    ("nin_shortcut.", "conv_shortcut."),
];

/// The mid-block attention: LDM's 1×1 convolutions to diffusers' linears.
const ATTENTION: &[(&str, &str, Transform)] = &[
    ("norm.weight", "group_norm.weight", Transform::Identity),
    ("norm.bias", "group_norm.bias", Transform::Identity),
    ("q.weight", "to_q.weight", Transform::Reshape),
    ("q.bias", "to_q.bias", Transform::Identity),
    ("k.weight", "to_k.weight", Transform::Reshape),
    ("k.bias", "to_k.bias", Transform::Identity),
    ("v.weight", "to_v.weight", Transform::Reshape),
    ("v.bias", "to_v.bias", Transform::Identity),
    ("proj_out.weight", "to_out.0.weight", Transform::Reshape),
    ("proj_out.bias", "to_out.0.bias", Transform::Identity),
];

/// Old diffusers names of the mid-block attention (before diffusers 0.14), to current ones.
const LEGACY_DIFFUSERS: &[(&str, &str)] = &[
    ("encoder.mid_block.attentions.0.query.", "encoder.mid_block.attentions.0.to_q."),
    ("encoder.mid_block.attentions.0.key.", "encoder.mid_block.attentions.0.to_k."),
    ("encoder.mid_block.attentions.0.value.", "encoder.mid_block.attentions.0.to_v."),
    ("encoder.mid_block.attentions.0.proj_attn.", "encoder.mid_block.attentions.0.to_out.0."),
    ("decoder.mid_block.attentions.0.query.", "decoder.mid_block.attentions.0.to_q."),
    ("decoder.mid_block.attentions.0.key.", "decoder.mid_block.attentions.0.to_k."),
    ("decoder.mid_block.attentions.0.value.", "decoder.mid_block.attentions.0.to_v."),
    ("decoder.mid_block.attentions.0.proj_attn.", "decoder.mid_block.attentions.0.to_out.0."),
];

/// The canonical tensor (without `vae.`) for a single-file VAE key, given the VAE's level count.
pub fn map(rest: &str, levels: usize) -> Option<Target> {
    let plain = |name: String| Some(Target { name, transform: Transform::Identity });
    if let Some((to, tail, t)) =
        FIXED.iter().find_map(|&(from, to, tail)| rest.strip_prefix(from).map(|t| (to, tail, t)))
    {
        return match tail {
            Tail::Same => plain(format!("{to}{t}")),
            Tail::Resnet => plain(format!("{to}{}", rename_prefix(t, RESNET)?)),
            Tail::Attention => ATTENTION
                .iter()
                .find(|&&(from, _, _)| from == t)
                .map(|&(_, name, transform)| Target { name: format!("{to}{name}"), transform }),
        };
    }
    if let Some((i, t)) = index_after(rest, "encoder.down.") {
        if let Some((j, t)) = index_after(t, "block.") {
            return plain(format!("encoder.down_blocks.{i}.resnets.{j}.{}", rename_prefix(t, RESNET)?));
        }
        return plain(format!(
            "encoder.down_blocks.{i}.downsamplers.0.conv.{}",
            t.strip_prefix("downsample.conv.")?
        ));
    }
    if let Some((i, t)) = index_after(rest, "decoder.up.") {
        let level = levels.checked_sub(1)?.checked_sub(i)?;
        if let Some((j, t)) = index_after(t, "block.") {
            return plain(format!("decoder.up_blocks.{level}.resnets.{j}.{}", rename_prefix(t, RESNET)?));
        }
        return plain(format!(
            "decoder.up_blocks.{level}.upsamplers.0.conv.{}",
            t.strip_prefix("upsample.conv.")?
        ));
    }
    None
}

/// A diffusers VAE key with legacy attention names renamed (others unchanged).
pub fn legacy_diffusers(key: &str) -> String {
    rename_prefix(key, LEGACY_DIFFUSERS).unwrap_or_else(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_levels_are_reversed_and_attention_reshaped() {
        let t = map("decoder.up.0.block.2.nin_shortcut.weight", 4).unwrap();
        assert_eq!(t.name, "decoder.up_blocks.3.resnets.2.conv_shortcut.weight");
        let t = map("decoder.up.3.upsample.conv.bias", 4).unwrap();
        assert_eq!(t.name, "decoder.up_blocks.0.upsamplers.0.conv.bias");
        let t = map("encoder.down.2.downsample.conv.weight", 4).unwrap();
        assert_eq!(t.name, "encoder.down_blocks.2.downsamplers.0.conv.weight");
        let t = map("encoder.mid.attn_1.proj_out.weight", 4).unwrap();
        assert_eq!(
            (t.name.as_str(), t.transform),
            ("encoder.mid_block.attentions.0.to_out.0.weight", Transform::Reshape)
        );
        let t = map("decoder.mid.attn_1.norm.bias", 4).unwrap();
        assert_eq!(
            (t.name.as_str(), t.transform),
            ("decoder.mid_block.attentions.0.group_norm.bias", Transform::Identity)
        );
        assert_eq!(map("decoder.up.4.block.0.conv1.weight", 4), None);
        assert_eq!(map("encoder.mid.attn_1.qkv.weight", 4), None);
    }

    #[test]
    fn legacy_attention_names() {
        assert_eq!(
            legacy_diffusers("decoder.mid_block.attentions.0.proj_attn.weight"),
            "decoder.mid_block.attentions.0.to_out.0.weight"
        );
        assert_eq!(legacy_diffusers("decoder.conv_in.weight"), "decoder.conv_in.weight");
    }
}
