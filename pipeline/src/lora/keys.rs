//! Which model weight a LoRA module key patches. Trainers name modules in several ways, all
//! mapped here to the canonical weight name (`unet.down_blocks.0.attentions.0.proj_in.weight`):
//!
//! - kohya / sd-scripts: `lora_unet_` plus the module path with `.` written `_`, in the diffusers
//!   layout (`lora_unet_down_blocks_0_attentions_0_proj_in`, SD 1.5 files) or the original LDM
//!   layout (`lora_unet_input_blocks_1_1_proj_in`, SDXL files); text encoders as `lora_te_`
//!   (SD 1.5), `lora_te1_` and `lora_te2_` (SDXL's two), over transformers' module paths;
//! - diffusers and PEFT: the dotted module path with its component prefix (`unet.`,
//!   `text_encoder.`, `text_encoder_2.`), or a UNet path without one.
//!
//! The index is built from the model's own patchable weights, so only names the model has can
//! map, whatever the layout.

use std::collections::HashMap;

use kiln_runtime::checkpoint::names::{UnetBlocks, unet_single_file_names};

use crate::models::patch::PatchTable;

/// LoRA module keys to canonical weight names, for one model.
#[derive(Clone, Debug, Default)]
pub struct TargetIndex {
    targets: HashMap<String, String>,
}

impl TargetIndex {
    /// The index of `table`'s weights; `blocks` is the UNet's grid, for LDM-layout names.
    pub fn new(table: &PatchTable, blocks: UnetBlocks) -> TargetIndex {
        let mut targets = HashMap::new();
        for name in table.keys() {
            let Some(module) = name.strip_suffix(".weight") else { continue };
            let mut add = |key: String| {
                targets.entry(key).or_insert_with(|| name.clone());
            };
            add(module.to_owned());
            if let Some(path) = module.strip_prefix("unet.") {
                add(path.to_owned());
                add(format!("lora_unet_{}", underscored(path)));
                for single in unet_single_file_names(name.strip_prefix("unet.").unwrap_or(name), blocks) {
                    if let Some(single) = single.strip_suffix(".weight") {
                        add(format!("lora_unet_{}", underscored(single)));
                    }
                }
            } else if let Some(path) = module.strip_prefix("text_encoder.") {
                add(format!("lora_te_{}", underscored(path)));
                add(format!("lora_te1_{}", underscored(path)));
            } else if let Some(path) = module.strip_prefix("text_encoder_2.") {
                add(format!("lora_te2_{}", underscored(path)));
            }
        }
        TargetIndex { targets }
    }

    /// The canonical weight name `key` patches, if the model has it.
    pub fn target(&self, key: &str) -> Option<&str> {
        self.targets.get(key).map(String::as_str)
    }
}

fn underscored(path: &str) -> String {
    path.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use kiln_runtime::{DType, Device, Tensor};

    use super::*;
    use crate::models::patch::{PatchableWeight, WeightLayout};

    fn table(names: &[&str]) -> PatchTable {
        let weight = Tensor::full(0.5, &[2, 2], DType::F32, Device::Cpu).unwrap();
        names
            .iter()
            .map(|n| ((*n).to_owned(), PatchableWeight::new(weight.clone(), WeightLayout::Linear)))
            .collect()
    }

    #[test]
    fn every_trainer_spelling_maps_to_the_canonical_weight() {
        let sdxl = UnetBlocks { levels: 3, layers_per_block: 2 };
        let q = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight";
        let conv = "unet.down_blocks.0.resnets.1.conv1.weight";
        let up = "unet.up_blocks.0.upsamplers.0.conv.weight";
        let te2 = "text_encoder_2.text_model.encoder.layers.3.mlp.fc1.weight";
        let te = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight";
        let index = TargetIndex::new(&table(&[q, conv, up, te2, te]), sdxl);
        let cases = [
            ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", q),
            ("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q", q),
            ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", q),
            ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", q),
            ("lora_unet_input_blocks_2_0_in_layers_2", conv),
            ("lora_unet_output_blocks_2_1_conv", up),
            ("lora_unet_output_blocks_2_2_conv", up),
            ("lora_te2_text_model_encoder_layers_3_mlp_fc1", te2),
            ("text_encoder_2.text_model.encoder.layers.3.mlp.fc1", te2),
            ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", te),
            ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", te),
        ];
        for (key, want) in cases {
            assert_eq!(index.target(key), Some(want), "{key}");
        }
        for key in [
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k",
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj",
            "text_encoder.x",
        ] {
            assert_eq!(index.target(key), None, "{key}");
        }
    }
}
