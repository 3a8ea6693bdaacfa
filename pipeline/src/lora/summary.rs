//! What a LoRA file is, from its names and shapes alone: the kind of update, the trainer's
//! naming, and the family it was trained for.

use super::file::{LoraFile, Part};

/// A LoRA file described.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraSummary {
    /// `LoRA`, `LoCon` (with convolution updates), `LoHa`, `LoKr`, or `full` (differences).
    pub kind: &'static str,
    /// Whose names: `kohya, diffusers layout`, `kohya, original layout`, `PEFT`, `diffusers`.
    pub layout: &'static str,
    /// The family its shapes say, when they do.
    pub family: Option<&'static str>,
    /// Modules it updates.
    pub modules: usize,
}

impl LoraFile {
    /// The file described.
    pub fn summary(&self) -> LoraSummary {
        let parts = || self.modules().values().flat_map(|m| m.parts.keys());
        let has = |part: Part| parts().any(|p| *p == part);
        let conv = self.modules().values().any(|m| {
            m.parts
                .get(&Part::Down)
                .and_then(|name| self.tensor(name).ok())
                .is_some_and(|t| t.shape().len() == 4 && t.shape()[2] > 1)
        });
        let kind = if has(Part::HadaW1A) {
            "LoHa"
        } else if has(Part::LokrW1) || has(Part::LokrW1A) {
            "LoKr"
        } else if conv {
            "LoCon"
        } else if has(Part::Down) {
            "LoRA"
        } else {
            "full"
        };
        let keys = || self.modules().keys();
        let layout = if keys().any(|k| k.starts_with("lora_unet_") || k.starts_with("lora_te")) {
            let original = keys().any(|k| {
                ["_input_blocks_", "_output_blocks_", "_middle_block_"].iter().any(|b| k.contains(b))
            });
            if original { "kohya, original layout" } else { "kohya, diffusers layout" }
        } else if self.modules().values().flat_map(|m| m.parts.values()).any(|n| n.contains(".lora_A.")) {
            "PEFT"
        } else {
            "diffusers"
        };
        LoraSummary { kind, layout, family: self.family(), modules: self.modules().len() }
    }

    /// The family the file's shapes say: SDXL when it updates a second text encoder, else the one
    /// whose text-context width its cross-attention keys take ([`LoraFile::context_width`]).
    pub fn family(&self) -> Option<&'static str> {
        if self.modules().keys().any(|k| k.starts_with("lora_te2_") || k.starts_with("text_encoder_2.")) {
            return Some("SDXL");
        }
        self.context_width().and_then(family_of_width)
    }

    /// The text-context width its cross-attention key projections (`attn2.to_k`) take, if it has
    /// one (768 for SD 1.5, 2048 for SDXL).
    pub fn context_width(&self) -> Option<usize> {
        self.modules().iter().find_map(|(key, module)| {
            let attends_to_text = key.ends_with("attn2_to_k") || key.ends_with("attn2.to_k");
            let down = module.parts.get(&Part::Down).filter(|_| attends_to_text)?;
            self.tensor(down).ok().and_then(|t| t.shape().get(1).copied())
        })
    }
}

/// The family whose UNet attends to a text context `width` wide.
pub fn family_of_width(width: usize) -> Option<&'static str> {
    match width {
        768 => Some("SD 1.5"),
        1024 => Some("SD 2.x"),
        1280 => Some("the SDXL refiner"),
        2048 => Some("SDXL"),
        _ => None,
    }
}
