//! What requests add to a loaded [`Engine`]: LoRA sets merged into its weights, another VAE in
//! place of its own, textual-inversion triggers added to its prompts. Each is replaced as a
//! whole, undone exactly, and left as it was when it fails.

use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::{Checkpoint, Component};

use super::{Engine, Result};
use crate::embeddings::{EmbeddingError, EmbeddingFile};
use crate::lora::{self, LoraError, LoraReport, ModelSide, WeightedLora};
use crate::models::ModelError;
use crate::models::patch::PatchTable;
use crate::models::vae::Vae;

impl Engine {
    /// Merges `loras` into the UNet and text encoders, replacing the set merged before (whose
    /// original weights are put back first, bit for bit); an empty set restores the model.
    /// Nothing is done when the set is the one merged now. On error the model is left with its
    /// original weights.
    pub fn set_loras(
        &mut self,
        loras: &[WeightedLora<'_>],
    ) -> std::result::Result<Vec<LoraReport>, LoraError> {
        let wanted: Vec<(PathBuf, f32)> =
            loras.iter().map(|l| (l.file.path().to_path_buf(), l.weight)).collect();
        if wanted == self.loras {
            return Ok(Vec::new());
        }
        lora::restore(&self.patchable, std::mem::take(&mut self.originals));
        self.loras.clear();
        if loras.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.unet.config();
        let family = self.family.to_string();
        let side = ModelSide {
            table: &self.patchable,
            index: &self.lora_index,
            family: &family,
            context_width: c.cross_attention_dim,
            has_text_encoder_2: self.family.components().contains(&Component::TextEncoder2),
        };
        let (originals, reports) = lora::merge(side, loras)?;
        self.originals = originals;
        self.loras = wanted;
        Ok(reports)
    }

    /// The UNet's and text encoders' patchable weights (merged ones while a LoRA set is).
    pub fn weights(&self) -> &PatchTable {
        &self.patchable
    }

    /// Decodes and encodes with the VAE at `path` instead of the checkpoint's own (a single file
    /// in either naming or a diffusers VAE folder, configured as the own one unless its folder
    /// has a `config.json`; see [`Checkpoint::open_vae`]); `None` puts the own one back. The
    /// VAE in use already is not reloaded; the own one is kept while another is in use. On
    /// error the VAE in use is unchanged.
    pub fn set_vae(&mut self, path: Option<&Path>) -> Result<()> {
        if self.vae_path.as_deref() == path {
            return Ok(());
        }
        match path {
            None => {
                if let Some(own) = self.own_vae.take() {
                    self.vae = own;
                }
            }
            Some(path) => {
                let own = self.own_vae.as_ref().unwrap_or(&self.vae).config();
                let ckpt = Checkpoint::open_vae(path, self.family, Some(own)).map_err(ModelError::from)?;
                let vae = Vae::load(&ckpt, self.dtype, self.device)?;
                let previous = std::mem::replace(&mut self.vae, vae);
                self.own_vae.get_or_insert(previous);
            }
        }
        self.vae_path = path.map(Path::to_path_buf);
        Ok(())
    }

    /// Makes each `(trigger, embedding)` a word of the prompts (see
    /// [`crate::models::conditioning::TextConditioner::set_textual_inversions`]), replacing the set in use; an empty set
    /// removes them. The set in use already is not set again. On error the set in use stays.
    pub fn set_textual_inversions(
        &mut self,
        set: &[(String, &EmbeddingFile)],
    ) -> std::result::Result<(), EmbeddingError> {
        let wanted: Vec<(PathBuf, String)> =
            set.iter().map(|(t, f)| (f.path().to_path_buf(), t.clone())).collect();
        if wanted == self.textual_inversions {
            return Ok(());
        }
        self.text.set_textual_inversions(set, &self.family.to_string())?;
        self.textual_inversions = wanted;
        Ok(())
    }

    /// The VAE file in use instead of the checkpoint's own, if any.
    pub fn vae_path(&self) -> Option<&Path> {
        self.vae_path.as_deref()
    }

    /// The LoRA set merged now: each file and its weight.
    pub fn loras(&self) -> &[(PathBuf, f32)] {
        &self.loras
    }
}
