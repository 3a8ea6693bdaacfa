//! CLIP's text tower as transformers defines it: `CLIPTextModel` (OpenAI CLIP-L: SD 1.5's
//! encoder and SDXL's first) and `CLIPTextModelWithProjection` (OpenCLIP-G: SDXL's second, whose
//! pooled output is projected). Token embeddings stay on the host (49408 rows; only the
//! prompt's rows are gathered and uploaded), position embeddings are added, then pre-norm
//! layers with causal self-attention; any layer's hidden state can be taken out.
//!
//! Which layer a pipeline uses (`clip_skip`) is [`LayerSelection`]'s business; see
//! [`LayerSelection::sd15`] and [`LayerSelection::sdxl`] for diffusers' rules.

mod layer;
pub mod vision;

use kiln_runtime::checkpoint::{Component, TextEncoderConfig};
use kiln_runtime::{DType, Tensor};

use super::nn::{LayerNorm, Linear};
use super::patch::PatchTable;
use super::{ModelError, Result, Weights};
pub use layer::Activation;
use layer::{ClipLayer, LayerSizes};

/// Which hidden state a text encoder returns per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSelection {
    /// Layers skipped from the end: 0 is the last layer's output, 1 the penultimate, ...;
    /// `num_hidden_layers` is the embeddings themselves (transformers' `hidden_states[-(n+1)]`).
    pub from_end: usize,
    /// Whether the final layer norm is applied to it.
    pub final_layer_norm: bool,
}

impl LayerSelection {
    /// SD 1.5 (diffusers' `StableDiffusionPipeline.encode_prompt`): without `clip_skip` the
    /// `last_hidden_state` (last layer, final layer norm); with `clip_skip = k`,
    /// `hidden_states[-(k + 1)]` then the final layer norm (k = 1 is therefore the same as none).
    pub fn sd15(clip_skip: Option<usize>) -> LayerSelection {
        LayerSelection { from_end: clip_skip.unwrap_or(0), final_layer_norm: true }
    }

    /// SDXL (`StableDiffusionXLPipeline.encode_prompt`), for both encoders:
    /// `hidden_states[-(clip_skip + 2)]`, the penultimate layer by default, without the final
    /// layer norm.
    pub fn sdxl(clip_skip: Option<usize>) -> LayerSelection {
        LayerSelection { from_end: clip_skip.unwrap_or(0) + 1, final_layer_norm: false }
    }
}

/// What a text encoder returns for a batch of windows.
#[derive(Clone, Debug)]
pub struct TextEncoderOutput {
    /// The selected hidden state, `[B, L, C]`.
    pub hidden: Tensor,
    /// `text_projection(final_layer_norm(last layer))` at each window's first EOS, `[B, P]`:
    /// only for models with a projection (SDXL's second encoder).
    pub pooled: Option<Tensor>,
}

/// A CLIP text encoder, with or without the pooled-output projection.
#[derive(Clone, Debug)]
pub struct ClipTextModel {
    config: TextEncoderConfig,
    /// `[vocab, C]` on the host, f32.
    token_embedding: Vec<f32>,
    /// `[n, C]`: the rows of ids `vocab..vocab + n`, added words' vectors (textual inversions).
    added_embedding: Vec<f32>,
    /// `[max_positions, C]`.
    position_embedding: Tensor,
    layers: Vec<ClipLayer>,
    final_layer_norm: LayerNorm,
    projection: Option<Linear>,
    dtype: DType,
    /// Every linear weight, by canonical name.
    patchable: PatchTable,
}

impl ClipTextModel {
    /// Loads `component` (`text_encoder` or `text_encoder_2`) with the sizes of
    /// `w.checkpoint().text_encoder_config(component)`; the projection is loaded when the
    /// config has a `projection_dim`. Shapes that do not fit give [`ModelError::WeightShape`].
    pub fn load(w: &Weights, component: Component) -> Result<ClipTextModel> {
        let config = w.checkpoint().text_encoder_config(component).cloned().ok_or_else(|| {
            ModelError::input("clip text encoder", format!("the checkpoint has no {component} component"))
        })?;
        let c = &config;
        if c.num_attention_heads == 0 || c.hidden_size % c.num_attention_heads != 0 {
            return Err(ModelError::input(
                "clip text encoder",
                format!("{} heads do not divide hidden size {}", c.num_attention_heads, c.hidden_size),
            ));
        }
        let activation = Activation::from_config(&c.hidden_act)?;
        let text = w.at("text_model");
        let emb = text.at("embeddings");
        let token_embedding =
            emb.host("token_embedding.weight", &[c.vocab_size, c.hidden_size], DType::F32)?.to_vec_f32()?;
        let position_embedding =
            emb.tensor("position_embedding.weight", &[c.max_position_embeddings, c.hidden_size])?;
        let sizes = LayerSizes {
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
            eps: c.layer_norm_eps as f32,
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| ClipLayer::load(&text.at(format!("encoder.layers.{i}")), sizes, activation, true))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm =
            LayerNorm::load(&text.at("final_layer_norm"), c.hidden_size, c.layer_norm_eps as f32)?;
        let projection = match c.projection_dim {
            Some(p) if w.contains("text_projection.weight") => {
                Some(Linear::load(&w.at("text_projection"), c.hidden_size, p, false)?)
            }
            _ => None,
        };
        Ok(ClipTextModel {
            token_embedding,
            added_embedding: Vec::new(),
            position_embedding,
            layers,
            final_layer_norm,
            projection,
            dtype: w.dtype(),
            config,
            patchable: w.patchable(),
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &TextEncoderConfig {
        &self.config
    }

    /// Width of the hidden states (768 CLIP-L, 1280 OpenCLIP-G).
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// Sets the rows of the ids past the vocabulary (`vocab_size..`): `rows` is `[n, C]`
    /// row-major (textual-inversion vectors), replacing any set before.
    pub fn set_added_embedding(&mut self, rows: Vec<f32>) -> Result<()> {
        if !rows.len().is_multiple_of(self.config.hidden_size.max(1)) {
            return Err(ModelError::input(
                "clip text encoder",
                format!("{} values are not rows of width {}", rows.len(), self.config.hidden_size),
            ));
        }
        self.added_embedding = rows;
        Ok(())
    }

    /// The weights a LoRA can patch, by canonical name.
    pub fn patchable(&self) -> &PatchTable {
        &self.patchable
    }

    /// Whether the model has the pooled-output projection.
    pub fn has_projection(&self) -> bool {
        self.projection.is_some()
    }

    /// Runs `windows` (each a token window of the same length, at most the model's positions)
    /// and returns the selected hidden state `[B, L, C]` and, for models with a projection, the
    /// pooled output `[B, P]`.
    pub fn forward(&self, windows: &[Vec<u32>], select: LayerSelection) -> Result<TextEncoderOutput> {
        let c = &self.config;
        let input = |message: String| ModelError::input("clip text encoder", message);
        let l = windows.first().map_or(0, Vec::len);
        if windows.is_empty() || l == 0 || l > c.max_position_embeddings {
            return Err(input(format!(
                "expected 1 or more windows of 1..={} tokens, got {} windows of {l}",
                c.max_position_embeddings,
                windows.len()
            )));
        }
        if let Some(w) = windows.iter().find(|w| w.len() != l) {
            return Err(input(format!("windows differ in length: {l} and {}", w.len())));
        }
        let known = c.vocab_size + self.added_embedding.len() / c.hidden_size.max(1);
        if let Some(&t) = windows.iter().flatten().find(|&&t| t as usize >= known) {
            return Err(input(format!("token id {t} is outside the vocabulary of {known}")));
        }
        if select.from_end > self.layers.len() {
            return Err(input(format!(
                "cannot skip {} layers of {} (clip_skip too large)",
                select.from_end,
                self.layers.len()
            )));
        }
        let (b, d) = (windows.len(), c.hidden_size);
        let device = self.position_embedding.device();
        // Gather the prompt's rows on the host, upload once.
        let mut rows = Vec::with_capacity(b * l * d);
        for &t in windows.iter().flatten() {
            let t = t as usize;
            let row = match t.checked_sub(c.vocab_size) {
                None => &self.token_embedding[t * d..][..d],
                Some(added) => &self.added_embedding[added * d..][..d],
            };
            rows.extend_from_slice(row);
        }
        let tokens = Tensor::from_f32(rows, &[b, l, d], self.dtype, device)?; // [B, L, C]
        let positions = self.position_embedding.narrow(0, 0, l)?; // [L, C]
        let mut x = tokens.add(&positions)?; // [B, L, C]

        let stop = self.layers.len() - select.from_end;
        let mut selected = if stop == 0 { Some(x.clone()) } else { None };
        let needs_last = self.projection.is_some();
        let run = if needs_last { self.layers.len() } else { stop };
        for (i, layer) in self.layers[..run].iter().enumerate() {
            x = layer.forward(&x)?;
            if i + 1 == stop {
                selected = Some(x.clone());
            }
        }
        let mut hidden = selected.unwrap_or_else(|| x.clone());
        if select.final_layer_norm {
            hidden = self.final_layer_norm.forward(&hidden)?;
        }
        let pooled = match &self.projection {
            Some(projection) => Some(self.pool(&x, windows, projection)?),
            None => None,
        };
        Ok(TextEncoderOutput { hidden, pooled })
    }

    /// `text_projection(final_layer_norm(last[b, eos_b]))` for each window, where `eos_b` is the
    /// position of the window's largest id, first occurrence (transformers' legacy `argmax` rule
    /// for configs with `eos_token_id = 2`; `<|endoftext|>` 49407 is the largest id).
    fn pool(&self, last: &Tensor, windows: &[Vec<u32>], projection: &Linear) -> Result<Tensor> {
        let rows = windows
            .iter()
            .enumerate()
            .map(|(b, w)| {
                let max = w.iter().copied().max().unwrap_or(0);
                let eos = w.iter().position(|&t| t == max).unwrap_or(0);
                last.narrow(0, b, 1)?.narrow(1, eos, 1) // [1, 1, C]
            })
            .collect::<kiln_runtime::Result<Vec<_>>>()?;
        let rows: Vec<&Tensor> = rows.iter().collect();
        let d = self.config.hidden_size;
        let gathered = Tensor::concat(&rows, 0)?.reshape(&[windows.len(), d])?; // [B, C]
        projection.forward(&self.final_layer_norm.forward(&gathered)?) // [B, P]
    }
}
