//! The UNet's single-file names (`model.diffusion_model.` stripped) to diffusers names.
//!
//! LDM numbers its blocks flatly: `input_blocks.0` is conv_in, then each level has
//! `layers_per_block` blocks of a resnet (`.0`) and maybe a transformer (`.1`), and every level
//! but the last one more block holding the downsampler (`.0.op`). `output_blocks` has
//! `layers_per_block + 1` blocks per level, deepest level first, each a resnet (`.0`), maybe a
//! transformer (`.1`), and on the last block of every level but the shallowest an upsampler
//! (`.1.conv` or `.2.conv`). The transformer's own names are the same in both layouts.

use super::{UnetBlocks, index_after, rename_prefix};

/// How the tail after a fixed prefix is renamed.
#[derive(Clone, Copy, Debug)]
enum Tail {
    /// Unchanged (transformers, convolutions, linears).
    Same,
    /// A resnet's LDM submodule names.
    Resnet,
}

/// Fixed prefixes, in order; first match wins.
const FIXED: &[(&str, &str, Tail)] = &[
    ("time_embed.0.", "time_embedding.linear_1.", Tail::Same),
    ("time_embed.2.", "time_embedding.linear_2.", Tail::Same),
    ("label_emb.0.0.", "add_embedding.linear_1.", Tail::Same),
    ("label_emb.0.2.", "add_embedding.linear_2.", Tail::Same),
    ("input_blocks.0.0.", "conv_in.", Tail::Same),
    ("middle_block.0.", "mid_block.resnets.0.", Tail::Resnet),
    ("middle_block.1.", "mid_block.attentions.0.", Tail::Same),
    ("middle_block.2.", "mid_block.resnets.1.", Tail::Resnet),
    ("out.0.", "conv_norm_out.", Tail::Same),
    ("out.2.", "conv_out.", Tail::Same),
];

/// A resnet's submodules: LDM `ResBlock` to diffusers `ResnetBlock2D`.
const RESNET: &[(&str, &str)] = &[
    ("in_layers.0.", "norm1."),
    ("in_layers.2.", "conv1."),
    ("emb_layers.1.", "time_emb_proj."),
    ("out_layers.0.", "norm2."),
    ("out_layers.3.", "conv2."),
    ("skip_connection.", "conv_shortcut."),
];

/// The diffusers name of a UNet key, or `None` when it is not a UNet weight name.
pub fn map(rest: &str, blocks: UnetBlocks) -> Option<String> {
    if let Some(name) = FIXED
        .iter()
        .find_map(|&(from, to, tail)| rest.strip_prefix(from).map(|t| (to, tail, t)))
        .and_then(|(to, tail, t)| Some(format!("{to}{}", rename_tail(t, tail)?)))
    {
        return Some(name);
    }
    let per_level = blocks.layers_per_block + 1;
    if let Some((k, rest)) = index_after(rest, "input_blocks.") {
        let (level, j) = ((k.checked_sub(1)?) / per_level, (k - 1) % per_level);
        let (sub, tail) = index_after(rest, "")?;
        if level >= blocks.levels {
            return None;
        }
        return match (j == blocks.layers_per_block, sub) {
            (true, 0) => {
                Some(format!("down_blocks.{level}.downsamplers.0.conv.{}", tail.strip_prefix("op.")?))
            }
            (false, 0) => {
                Some(format!("down_blocks.{level}.resnets.{j}.{}", rename_tail(tail, Tail::Resnet)?))
            }
            (false, 1) => Some(format!("down_blocks.{level}.attentions.{j}.{tail}")),
            _ => None,
        };
    }
    if let Some((k, rest)) = index_after(rest, "output_blocks.") {
        let (level, j) = (k / per_level, k % per_level);
        let (sub, tail) = index_after(rest, "")?;
        if level >= blocks.levels {
            return None;
        }
        return match sub {
            0 => Some(format!("up_blocks.{level}.resnets.{j}.{}", rename_tail(tail, Tail::Resnet)?)),
            // An upsampler holds only `conv`; a transformer never has a `conv` submodule.
            _ if tail.starts_with("conv.") && j == blocks.layers_per_block => {
                Some(format!("up_blocks.{level}.upsamplers.0.{tail}"))
            }
            1 => Some(format!("up_blocks.{level}.attentions.{j}.{tail}")),
            _ => None,
        };
    }
    None
}

/// The single-file names of the diffusers UNet name `name`: the inverse of `map`, for tools
/// that name modules in the LDM layout (kohya's LoRAs for SDXL). Usually one; an upsampler gives
/// both spellings, `.1.conv` and `.2.conv`, as which one a file uses depends on whether the level
/// has attention. Empty when `name` is not in the grid.
pub fn unmap(name: &str, blocks: UnetBlocks) -> Vec<String> {
    for &(ldm, diffusers, tail) in FIXED {
        if let Some(t) = name.strip_prefix(diffusers) {
            return unrename_tail(t, tail).map(|t| vec![format!("{ldm}{t}")]).unwrap_or_default();
        }
    }
    let per_level = blocks.layers_per_block + 1;
    let one = |s: Option<String>| s.into_iter().collect::<Vec<_>>();
    if let Some((level, rest)) = index_after(name, "down_blocks.").filter(|(l, _)| *l < blocks.levels) {
        let block = |j: usize| 1 + level * per_level + j;
        if let Some((j, tail)) = index_after(rest, "resnets.").filter(|(j, _)| *j < blocks.layers_per_block) {
            return one(unrename_tail(tail, Tail::Resnet).map(|t| format!("input_blocks.{}.0.{t}", block(j))));
        }
        if let Some((j, tail)) =
            index_after(rest, "attentions.").filter(|(j, _)| *j < blocks.layers_per_block)
        {
            return vec![format!("input_blocks.{}.1.{tail}", block(j))];
        }
        if let Some(tail) = rest.strip_prefix("downsamplers.0.conv.") {
            return vec![format!("input_blocks.{}.0.op.{tail}", block(blocks.layers_per_block))];
        }
        return Vec::new();
    }
    if let Some((level, rest)) = index_after(name, "up_blocks.").filter(|(l, _)| *l < blocks.levels) {
        let block = |j: usize| level * per_level + j;
        if let Some((j, tail)) = index_after(rest, "resnets.").filter(|(j, _)| *j < per_level) {
            return one(
                unrename_tail(tail, Tail::Resnet).map(|t| format!("output_blocks.{}.0.{t}", block(j)))
            );
        }
        if let Some((j, tail)) = index_after(rest, "attentions.").filter(|(j, _)| *j < per_level) {
            return vec![format!("output_blocks.{}.1.{tail}", block(j))];
        }
        if let Some(tail) = rest.strip_prefix("upsamplers.0.conv.") {
            let k = block(blocks.layers_per_block);
            return vec![
                format!("output_blocks.{k}.1.conv.{tail}"),
                format!("output_blocks.{k}.2.conv.{tail}"),
            ];
        }
    }
    Vec::new()
}

fn unrename_tail(tail: &str, kind: Tail) -> Option<String> {
    match kind {
        Tail::Same => Some(tail.to_string()),
        Tail::Resnet => RESNET
            .iter()
            .find_map(|&(ldm, diffusers)| tail.strip_prefix(diffusers).map(|t| format!("{ldm}{t}"))),
    }
}

fn rename_tail(tail: &str, kind: Tail) -> Option<String> {
    match kind {
        Tail::Same => Some(tail.to_string()),
        Tail::Resnet => rename_prefix(tail, RESNET),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SD15: UnetBlocks = UnetBlocks { levels: 4, layers_per_block: 2 };
    const SDXL: UnetBlocks = UnetBlocks { levels: 3, layers_per_block: 2 };

    #[test]
    fn block_indices_follow_levels_and_layers() {
        let cases = [
            (SD15, "input_blocks.0.0.weight", "conv_in.weight"),
            (SD15, "input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"),
            (SD15, "input_blocks.2.1.proj_in.weight", "down_blocks.0.attentions.1.proj_in.weight"),
            (SD15, "input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"),
            (SD15, "input_blocks.4.0.skip_connection.bias", "down_blocks.1.resnets.0.conv_shortcut.bias"),
            (SD15, "input_blocks.11.0.out_layers.3.weight", "down_blocks.3.resnets.1.conv2.weight"),
            (SD15, "output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
            (SD15, "output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"),
            (SD15, "output_blocks.5.1.norm.weight", "up_blocks.1.attentions.2.norm.weight"),
            (SD15, "output_blocks.11.0.emb_layers.1.weight", "up_blocks.3.resnets.2.time_emb_proj.weight"),
            (
                SDXL,
                "input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight",
                "down_blocks.2.attentions.0.transformer_blocks.9.attn2.to_k.weight",
            ),
            (SDXL, "output_blocks.8.0.in_layers.2.bias", "up_blocks.2.resnets.2.conv1.bias"),
            (SDXL, "label_emb.0.2.weight", "add_embedding.linear_2.weight"),
            (
                SDXL,
                "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight",
                "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
            ),
        ];
        for (blocks, key, want) in cases {
            assert_eq!(map(key, blocks).as_deref(), Some(want), "{key}");
        }
    }

    #[test]
    fn unmap_inverts_map_on_every_published_unet_name() {
        for (file, blocks) in [("sd15.diffusers.json", SD15), ("sdxl_base.diffusers.json", SDXL)] {
            let path = format!("{}/../fixtures/manifests/{file}", env!("CARGO_MANIFEST_DIR"));
            let manifest: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let unet = manifest["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["path"].as_str().unwrap().starts_with("unet/"))
                .unwrap();
            let mut checked = 0;
            for tensor in unet["tensors"].as_array().unwrap() {
                let name = tensor["name"].as_str().unwrap();
                let single = unmap(name, blocks);
                assert!(!single.is_empty(), "{file}: {name}");
                let back: Vec<Option<String>> = single.iter().map(|s| map(s, blocks)).collect();
                assert!(
                    back.iter().all(|b| b.as_deref() == Some(name)),
                    "{file}: {name} -> {single:?} -> {back:?}"
                );
                checked += 1;
            }
            assert!(checked > 600, "{file}: {checked}");
        }
        assert!(unmap("down_blocks.4.resnets.0.conv1.weight", SD15).is_empty());
        assert!(unmap("down_blocks.0.resnets.2.conv1.weight", SD15).is_empty());
    }

    #[test]
    fn out_of_grid_and_unknown_keys_are_refused() {
        assert_eq!(map("input_blocks.12.0.in_layers.0.weight", SD15), None);
        assert_eq!(map("output_blocks.9.0.in_layers.0.weight", SDXL), None);
        assert_eq!(map("input_blocks.1.0.lora_down.weight", SD15), None);
        assert_eq!(map("input_blocks.1.2.conv.weight", SD15), None);
    }
}
