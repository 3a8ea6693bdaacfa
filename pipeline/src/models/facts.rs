//! [`ModelFacts`]: what validating a request needs to know of a model, read from its safetensors
//! headers and configs (no weights loaded), so that a request the model cannot honour is a
//! validation error on its field before anything renders.

use std::path::Path;

use kiln_runtime::checkpoint::{Checkpoint, CheckpointError, Component, Family, TextEncoderConfig};

use super::clip::LayerSelection;
use super::settings::{CheckpointSettings, RequestDefaults};

/// A model's family, the depth of its text encoders, and its request defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelFacts {
    /// The model family (sizes, SDXL-only fields, inpainting rules).
    pub family: Family,
    /// Hidden layers of its shallowest text encoder (`clip_skip` must reach a layer of each).
    pub text_layers: usize,
    /// What its `NAME.json` sets for requests that leave fields out ([`CheckpointSettings`]).
    pub defaults: RequestDefaults,
}

impl ModelFacts {
    /// The facts of an opened checkpoint. A text encoder without a config (absent from the
    /// checkpoint) counts with its family's published depth; loading such a checkpoint fails
    /// anyway, see [`ModelFacts::read`].
    pub fn of(ckpt: &Checkpoint) -> ModelFacts {
        let family = ckpt.family();
        let layers = text_encoders(family).map(|(component, published)| {
            ckpt.text_encoder_config(component).map_or(published.num_hidden_layers, |c| c.num_hidden_layers)
        });
        ModelFacts { family, text_layers: layers.min().unwrap_or(0), defaults: RequestDefaults::default() }
    }

    /// The same facts with `defaults` for requests.
    pub fn with_defaults(self, defaults: RequestDefaults) -> ModelFacts {
        ModelFacts { defaults, ..self }
    }

    /// Opens the checkpoint at `path` (single file or diffusers folder: headers and configs
    /// only), checks that it has every component its family's pipeline needs, and reads the
    /// `NAME.json` beside it.
    pub fn read(path: &Path) -> Result<ModelFacts, CheckpointError> {
        let ckpt = Checkpoint::open(path)?;
        ckpt.require_complete()?;
        let settings = CheckpointSettings::beside(path)?;
        Ok(ModelFacts::of(&ckpt).with_defaults(settings.defaults))
    }

    /// The facts of `family`'s published model (CLIP-L: 12 layers, OpenCLIP-G: 32).
    pub fn published(family: Family) -> ModelFacts {
        let layers = text_encoders(family).map(|(_, published)| published.num_hidden_layers);
        ModelFacts { family, text_layers: layers.min().unwrap_or(0), defaults: RequestDefaults::default() }
    }

    /// Whether the text encoders have the layer that a job's `clip_skip` (diffusers'
    /// convention, see [`diffusers_clip_skip`]) selects, by the rule the encoders apply
    /// ([`LayerSelection::sd15`] / [`LayerSelection::sdxl`]).
    pub fn has_layer_for(&self, clip_skip: Option<usize>) -> bool {
        let select = if self.family.is_sdxl() {
            LayerSelection::sdxl(clip_skip)
        } else {
            LayerSelection::sd15(clip_skip)
        };
        select.from_end <= self.text_layers
    }

    /// The deepest request `clip_skip` (OctoAI's convention, 1 = the last layer) the model can
    /// honour; 0 when none can.
    pub fn max_clip_skip(&self) -> usize {
        (1..=self.text_layers + 2)
            .take_while(|&c| self.has_layer_for(diffusers_clip_skip(c)))
            .last()
            .unwrap_or(0)
    }
}

impl From<Family> for ModelFacts {
    fn from(family: Family) -> ModelFacts {
        ModelFacts::published(family)
    }
}

/// OctoAI's / A1111's `clip_skip` (1 = the last layer) in diffusers' convention (`None` = the
/// default layer, 1 = one more layer skipped).
pub fn diffusers_clip_skip(octoai: usize) -> Option<usize> {
    octoai.checked_sub(1).filter(|&c| c > 0)
}

/// The family's text encoders with their published configs, in pipeline order.
fn text_encoders(family: Family) -> impl Iterator<Item = (Component, TextEncoderConfig)> {
    family.components().iter().filter_map(|&c| match c {
        Component::TextEncoder => Some((c, TextEncoderConfig::clip_l())),
        Component::TextEncoder2 => Some((c, TextEncoderConfig::open_clip_g())),
        _ => None,
    })
}
