//! LoRAs and their LyCORIS relatives merged into a loaded model's weights: several at once, each
//! with its request weight, on the UNet and every text encoder, on any device.
//!
//! - [`LoraFile`]: a `.safetensors` LoRA opened, its tensors grouped by module;
//! - [`TargetIndex`]: module keys in kohya, diffusers and PEFT spellings to the model's canonical
//!   weight names;
//! - `delta`: one module's update (LoRA, LoCon, LoHa, LoKr, full difference);
//! - [`LoraSummary`]: what a file is (kind, naming, family), for listings;
//! - [`merge`] / [`restore`]: `W + Σ weight · update` swapped in for each patched weight, and the
//!   kept originals swapped back, bit for bit.

mod delta;
mod file;
mod keys;
mod merge;
mod summary;

use std::path::PathBuf;

use kiln_runtime::checkpoint::CheckpointError;

pub use file::{LoraFile, Module, Part, is_lora_tensor};
pub use keys::TargetIndex;
pub use merge::{LoraReport, ModelSide, Originals, WeightedLora, merge, restore};
pub use summary::{LoraSummary, family_of_width};

/// Why a LoRA cannot be merged. The model's weights are left as they were.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// The file cannot be read as safetensors (missing, truncated, corrupt).
    #[error(transparent)]
    File {
        /// What is wrong with the file.
        #[from]
        source: CheckpointError,
    },
    /// A safetensors file without a single LoRA tensor name.
    #[error("{} is not a LoRA: none of its {tensors} tensors is named like a LoRA's (lora_down / lora_up, lora_A / lora_B, hada_*, lokr_*)", path.display())]
    NotALora {
        /// The file.
        path: PathBuf,
        /// How many tensors it has.
        tensors: usize,
    },
    /// The LoRA was trained for another family of models.
    #[error("{} is a LoRA for {lora}; the model is {model}", path.display())]
    WrongFamily {
        /// The file.
        path: PathBuf,
        /// The family the LoRA's shapes say.
        lora: String,
        /// The model's family.
        model: String,
    },
    /// Most of the LoRA's modules name no weight of the model.
    #[error(
        "{}: only {mapped} of its {total} modules name a weight of this {model} model; unmapped: {}",
        path.display(), unmapped.join(", ")
    )]
    MostlyUnmapped {
        /// The file.
        path: PathBuf,
        /// The model's family.
        model: String,
        /// Modules that map.
        mapped: usize,
        /// All modules.
        total: usize,
        /// The first modules that do not map.
        unmapped: Vec<String>,
    },
    /// One module's tensors do not make an update for the weight it names.
    #[error("{}: module {key} {reason}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The module (or tensor) key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Merging into the model failed (a device error).
    #[error("merging {} into the model failed: {reason}", path.display())]
    Merge {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}
