//! The UNet's conditioning vectors: the sinusoidal timestep embedding through its MLP, and
//! SDXL's added embedding (pooled text + sinusoidal size/crop/score ids through another MLP).

use kiln_runtime::ops::TimestepEmbeddingParams;
use kiln_runtime::{DType, Device, Tensor};

use super::AddedConditioning;
use crate::models::nn::Linear;
use crate::models::{ModelError, Result, Weights};

/// diffusers' `TimestepEmbedding`: `linear_1 -> SiLU -> linear_2`.
#[derive(Clone, Debug)]
struct EmbeddingMlp {
    linear_1: Linear,
    linear_2: Linear,
}

impl EmbeddingMlp {
    fn load(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(EmbeddingMlp {
            linear_1: Linear::load(&w.at("linear_1"), in_dim, out_dim, true)?,
            linear_2: Linear::load(&w.at("linear_2"), out_dim, out_dim, true)?,
        })
    }

    /// `[B, in] -> [B, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(x)?.silu()?)
    }
}

/// SDXL's `text_time` added embedding: `concat(pooled, sinusoid(id) for each id) -> MLP`.
#[derive(Clone, Debug)]
struct AddedEmbedding {
    /// Width of each id's sinusoid (`addition_time_embed_dim`: 256 for SDXL).
    id_dim: usize,
    /// Input width of the MLP: pooled width + ids × `id_dim`.
    input_dim: usize,
    mlp: EmbeddingMlp,
}

/// Every conditioning vector of the UNet, summed into one `[B, time_embed_dim]` embedding.
#[derive(Clone, Debug)]
pub(super) struct Conditioning {
    /// Width of the timestep sinusoid (the first level's channels).
    sinusoid_dim: usize,
    params: TimestepEmbeddingParams,
    time: EmbeddingMlp,
    added: Option<AddedEmbedding>,
    dtype: DType,
    device: Device,
}

impl Conditioning {
    /// Loads `time_embedding.*` and, when `added` is `Some((id_dim, input_dim))`,
    /// `add_embedding.*`.
    pub(super) fn load(
        w: &Weights,
        sinusoid_dim: usize,
        embed_dim: usize,
        params: TimestepEmbeddingParams,
        added: Option<(usize, usize)>,
    ) -> Result<Self> {
        let added = added
            .map(|(id_dim, input_dim)| -> Result<AddedEmbedding> {
                Ok(AddedEmbedding {
                    id_dim,
                    input_dim,
                    mlp: EmbeddingMlp::load(&w.at("add_embedding"), input_dim, embed_dim)?,
                })
            })
            .transpose()?;
        Ok(Conditioning {
            sinusoid_dim,
            params,
            time: EmbeddingMlp::load(&w.at("time_embedding"), sinusoid_dim, embed_dim)?,
            added,
            dtype: w.dtype(),
            device: w.device(),
        })
    }

    /// Whether the model needs [`AddedConditioning`].
    pub(super) fn needs_added(&self) -> bool {
        self.added.is_some()
    }

    /// Checks that `added` fits the added embedding: `text_embeds [B, P]` and `B × n` time ids
    /// with `P + n × id_dim` equal to the embedding's input width.
    fn check_added(&self, added: &AddedConditioning, batch: usize) -> Result<()> {
        let Some(a) = &self.added else { return Ok(()) };
        let text = added.text_embeds.dims();
        let ids_per_sample = added.time_ids.len().checked_div(batch).unwrap_or(0);
        let fits = text.len() == 2
            && text[0] == batch
            && added.time_ids.len() == batch * ids_per_sample
            && text[1] + ids_per_sample * a.id_dim == a.input_dim;
        if fits {
            Ok(())
        } else {
            Err(ModelError::input(
                "unet",
                format!(
                    "added conditioning: text_embeds {text:?} and {} time ids for batch {batch} do not \
                     make the {} inputs of the added embedding (pooled width + ids × {})",
                    added.time_ids.len(),
                    a.input_dim,
                    a.id_dim
                ),
            ))
        }
    }

    /// The embedding `[B, time_embed_dim]` for `timesteps` (one per sample) and, for SDXL,
    /// the added conditioning. Checks that the added conditioning is there exactly when needed.
    pub(super) fn forward(&self, timesteps: &[f32], added: Option<&AddedConditioning>) -> Result<Tensor> {
        let batch = timesteps.len();
        let sinusoid =
            Tensor::timestep_embedding(timesteps, self.sinusoid_dim, self.params, self.dtype, self.device)?; // [B, sinusoid_dim]
        let emb = self.time.forward(&sinusoid)?; // [B, T]
        match (&self.added, added) {
            (None, None) => Ok(emb),
            (None, Some(_)) => Err(ModelError::input(
                "unet",
                "added conditioning (pooled text, time ids) given to a UNet without an added embedding",
            )),
            (Some(_), None) => Err(ModelError::input(
                "unet",
                "this UNet (SDXL) needs added conditioning: pooled text embeddings and time ids",
            )),
            (Some(a), Some(cond)) => {
                self.check_added(cond, batch)?;
                let ids = Tensor::timestep_embedding(
                    &cond.time_ids,
                    a.id_dim,
                    self.params,
                    self.dtype,
                    self.device,
                )?; // [B * n, id_dim]
                let per_sample = ids.elem_count() / batch.max(1);
                let ids = ids.reshape(&[batch, per_sample])?; // [B, n * id_dim]
                let text = cond.text_embeds.to_dtype(self.dtype)?.to_device(self.device)?; // [B, P]
                let input = Tensor::concat(&[&text, &ids], 1)?; // [B, P + n * id_dim]
                Ok(emb.add(&a.mlp.forward(&input)?)?)
            }
        }
    }
}
