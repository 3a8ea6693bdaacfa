//! A LoRA file's tensors grouped by the module they patch: each tensor name is a module key
//! plus a part suffix (`.lora_down.weight`, `.lora_A.weight`, `.alpha`, `.hada_w1_a`, ...).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::{SafetensorsFile, TensorView};

use super::LoraError;

/// One tensor's role in its module's update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// LoRA's down projection `[r, in]` (LoCon: `[r, in, k, k]`); PEFT's `lora_A`.
    Down,
    /// LoRA's up projection `[out, r]` (LoCon: `[out, r, 1, 1]`); PEFT's `lora_B`.
    Up,
    /// LoCon's Tucker core (`lora_mid`), not applied.
    Mid,
    /// The scale numerator: the update is scaled by `alpha / rank`.
    Alpha,
    /// LoHa's factors: `(w1_a · w1_b) ⊙ (w2_a · w2_b)`.
    HadaW1A,
    /// See [`Part::HadaW1A`].
    HadaW1B,
    /// See [`Part::HadaW1A`].
    HadaW2A,
    /// See [`Part::HadaW1A`].
    HadaW2B,
    /// LoHa's Tucker cores, not applied.
    HadaTucker,
    /// LoKr's first Kronecker factor, whole or as `w1_a · w1_b`.
    LokrW1,
    /// See [`Part::LokrW1`].
    LokrW1A,
    /// See [`Part::LokrW1`].
    LokrW1B,
    /// LoKr's second Kronecker factor, whole or as `w2_a · w2_b`.
    LokrW2,
    /// See [`Part::LokrW2`].
    LokrW2A,
    /// See [`Part::LokrW2`].
    LokrW2B,
    /// LoKr's Tucker core, not applied.
    LokrTucker,
    /// A whole weight difference (LyCORIS "full").
    Diff,
    /// A bias difference, not applied.
    DiffBias,
    /// DoRA's magnitude vector, not applied.
    Dora,
}

/// Name suffixes and the part each marks; longest spellings first where one ends another.
const SUFFIXES: &[(&str, Part)] = &[
    (".lora_down.weight", Part::Down),
    (".lora_up.weight", Part::Up),
    (".lora_mid.weight", Part::Mid),
    (".lora_A.weight", Part::Down),
    (".lora_B.weight", Part::Up),
    (".lora_linear_layer.down.weight", Part::Down),
    (".lora_linear_layer.up.weight", Part::Up),
    (".lora.down.weight", Part::Down),
    (".lora.up.weight", Part::Up),
    ("_lora.down.weight", Part::Down),
    ("_lora.up.weight", Part::Up),
    (".alpha", Part::Alpha),
    (".hada_w1_a", Part::HadaW1A),
    (".hada_w1_b", Part::HadaW1B),
    (".hada_w2_a", Part::HadaW2A),
    (".hada_w2_b", Part::HadaW2B),
    (".hada_t1", Part::HadaTucker),
    (".hada_t2", Part::HadaTucker),
    (".lokr_w1", Part::LokrW1),
    (".lokr_w1_a", Part::LokrW1A),
    (".lokr_w1_b", Part::LokrW1B),
    (".lokr_w2", Part::LokrW2),
    (".lokr_w2_a", Part::LokrW2A),
    (".lokr_w2_b", Part::LokrW2B),
    (".lokr_t2", Part::LokrTucker),
    (".diff", Part::Diff),
    (".diff_b", Part::DiffBias),
    (".dora_scale", Part::Dora),
    (".lora_magnitude_vector", Part::Dora),
];

/// One module's tensors: part to tensor name.
#[derive(Clone, Debug, Default)]
pub struct Module {
    /// The tensor name of each part.
    pub parts: BTreeMap<Part, String>,
}

/// An opened LoRA (or LyCORIS) file, its tensors grouped by module key.
#[derive(Debug)]
pub struct LoraFile {
    file: SafetensorsFile,
    /// Module key (as the file spells it, part suffix removed) to its tensors.
    modules: BTreeMap<String, Module>,
    /// Tensors whose names end in no known part suffix.
    unrecognised: Vec<String>,
}

impl LoraFile {
    /// Opens `path` (memory-mapped; the header is checked, no tensor read yet).
    pub fn open(path: &Path) -> Result<LoraFile, LoraError> {
        let file = SafetensorsFile::open(path).map_err(|source| LoraError::File { source })?;
        let mut modules: BTreeMap<String, Module> = BTreeMap::new();
        let mut unrecognised = Vec::new();
        for tensor in file.tensors() {
            let name = tensor.name();
            match split_part(name) {
                Some((module, part)) => {
                    modules.entry(module).or_default().parts.insert(part, name.to_owned());
                }
                None => unrecognised.push(name.to_owned()),
            }
        }
        if modules.is_empty() {
            return Err(LoraError::NotALora { path: path.to_path_buf(), tensors: file.len() });
        }
        Ok(LoraFile { file, modules, unrecognised })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The modules, by key.
    pub fn modules(&self) -> &BTreeMap<String, Module> {
        &self.modules
    }

    /// Tensors that are not part of any module update.
    pub fn unrecognised(&self) -> &[String] {
        &self.unrecognised
    }

    /// The tensor `name` (a name from [`Module::parts`]).
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, LoraError> {
        self.file.get(name).ok_or_else(|| LoraError::Tensor {
            path: self.path().to_path_buf(),
            key: name.to_owned(),
            reason: "is listed in the header but cannot be read".into(),
        })
    }

    /// A module part as f32 values with its shape.
    pub fn values(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), LoraError> {
        let view = self.tensor(name)?;
        let shape = view.shape().to_vec();
        let values = view.to_f32_vec().map_err(|source| LoraError::File { source })?;
        Ok((values, shape))
    }

    /// A module's scalar part (`alpha`), when present.
    pub fn scalar(&self, module: &Module, part: Part) -> Result<Option<f32>, LoraError> {
        let Some(name) = module.parts.get(&part) else { return Ok(None) };
        let (values, _) = self.values(name)?;
        match values.as_slice() {
            [value] => Ok(Some(*value)),
            _ => Err(LoraError::Tensor {
                path: self.path().to_path_buf(),
                key: name.clone(),
                reason: format!("should hold one number, holds {}", values.len()),
            }),
        }
    }

    /// The path, for errors.
    pub(super) fn path_buf(&self) -> PathBuf {
        self.path().to_path_buf()
    }
}

/// Whether `name` is named like a tensor of a LoRA or LyCORIS module (ends in a part suffix).
pub fn is_lora_tensor(name: &str) -> bool {
    split_part(name).is_some()
}

/// `(module key, part)` of a tensor name, or `None` for a name with no known part suffix.
/// diffusers' old attention-processor spelling `…attn1.processor.to_q_lora.down.weight` becomes
/// the module `…attn1.to_q` (and `to_out_lora`, `…to_out.0`).
fn split_part(name: &str) -> Option<(String, Part)> {
    let (module, part) =
        SUFFIXES.iter().find_map(|&(suffix, part)| name.strip_suffix(suffix).map(|module| (module, part)))?;
    if module.is_empty() {
        return None;
    }
    let module = match module.split_once(".processor.") {
        Some((attention, projection)) if name.contains("_lora.") => {
            let projection = if projection == "to_out" { "to_out.0" } else { projection };
            format!("{attention}.{projection}")
        }
        _ => module.to_owned(),
    };
    Some((module, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_module_and_part_in_every_spelling() {
        let cases = [
            (
                "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
                "lora_unet_down_blocks_0_attentions_0_proj_in",
                Part::Down,
            ),
            (
                "lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha",
                "lora_te1_text_model_encoder_layers_0_mlp_fc1",
                Part::Alpha,
            ),
            (
                "unet.mid_block.attentions.0.proj_out.lora_B.weight",
                "unet.mid_block.attentions.0.proj_out",
                Part::Up,
            ),
            (
                "text_encoder.text_model.encoder.layers.1.self_attn.q_proj.lora_linear_layer.down.weight",
                "text_encoder.text_model.encoder.layers.1.self_attn.q_proj",
                Part::Down,
            ),
            (
                "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight",
                "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0",
                Part::Up,
            ),
            (
                "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight",
                "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
                Part::Down,
            ),
            (
                "lora_unet_input_blocks_1_0_in_layers_2.hada_w1_b",
                "lora_unet_input_blocks_1_0_in_layers_2",
                Part::HadaW1B,
            ),
            (
                "lora_unet_input_blocks_1_0_in_layers_2.lokr_w1",
                "lora_unet_input_blocks_1_0_in_layers_2",
                Part::LokrW1,
            ),
            (
                "lora_unet_input_blocks_1_0_in_layers_2.lokr_w2_a",
                "lora_unet_input_blocks_1_0_in_layers_2",
                Part::LokrW2A,
            ),
            ("lora_unet_conv_in.diff_b", "lora_unet_conv_in", Part::DiffBias),
        ];
        for (name, module, part) in cases {
            assert_eq!(split_part(name), Some((module.to_owned(), part)), "{name}");
        }
        for name in ["unet.conv_in.weight", "alpha", ".alpha", "lora_unet_x.lora_down"] {
            assert_eq!(split_part(name), None, "{name}");
        }
    }
}
