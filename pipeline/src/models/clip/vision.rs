//! The CLIP vision tower IP-Adapters encode their images with (transformers'
//! `CLIPVisionModelWithProjection`: ViT-H/14 or ViT-bigG/14 in the published adapters).
//!
//! `pixels [B, S, S, 3]` (normalised, [`crate::image::clip`]) are cut into `S/P x S/P` patches by
//! a `P x P` stride-`P` convolution without bias, a learned class token is put first, positions
//! are added, then a layer norm (`pre_layrnorm`), the transformer layers (not causal), and the
//! class token's final state through `post_layernorm` and a bias-free projection:
//! `image_embeds [B, projection_dim]`. The second-to-last hidden states (before the last layer,
//! no final norm) are what "plus" adapters read.

use kiln_runtime::checkpoint::{Checkpoint, Component, ImageEncoderConfig};
use kiln_runtime::ops::Conv2dParams;
use kiln_runtime::{DType, Device, Tensor};

use super::layer::{Activation, ClipLayer, LayerSizes};
use crate::models::nn::{Conv2d, LayerNorm, Linear};
use crate::models::{ModelError, Result, Weights};

/// A loaded CLIP vision tower.
#[derive(Clone, Debug)]
pub struct ClipVisionModel {
    config: ImageEncoderConfig,
    patch_embedding: Conv2d,
    /// `[1, 1, D]`.
    class_embedding: Tensor,
    /// `[1, 1 + patches, D]`.
    position_embedding: Tensor,
    pre_norm: LayerNorm,
    layers: Vec<ClipLayer>,
    post_norm: LayerNorm,
    projection: Linear,
    dtype: DType,
    device: Device,
}

impl ClipVisionModel {
    /// Loads an encoder opened with [`Checkpoint::open_image_encoder`].
    pub fn load(ckpt: &Checkpoint, dtype: DType, device: Device) -> Result<ClipVisionModel> {
        let c = ckpt.image_encoder_config().cloned().ok_or_else(|| {
            ModelError::input(
                "clip vision encoder",
                format!("{} is not an image encoder", ckpt.path().display()),
            )
        })?;
        if c.num_attention_heads == 0 || c.hidden_size % c.num_attention_heads != 0 || c.patch_size == 0 {
            return Err(ModelError::input(
                "clip vision encoder",
                format!("{} heads do not divide hidden size {}", c.num_attention_heads, c.hidden_size),
            ));
        }
        let w = Weights::new(ckpt, Component::ImageEncoder, dtype, device);
        let v = w.at("vision_model");
        let e = v.at("embeddings");
        let d = c.hidden_size;
        let positions = (c.image_size / c.patch_size).pow(2) + 1;
        let patch = Conv2dParams { stride: c.patch_size, padding: 0 };
        let patch_embedding = Conv2d::load_without_bias(&e.at("patch_embedding"), 3, d, c.patch_size, patch)?;
        let class_embedding = e.tensor("class_embedding", &[d])?.reshape(&[1, 1, d])?;
        let position_embedding =
            e.tensor("position_embedding.weight", &[positions, d])?.reshape(&[1, positions, d])?;
        let eps = c.layer_norm_eps as f32;
        let sizes =
            LayerSizes { hidden: d, intermediate: c.intermediate_size, heads: c.num_attention_heads, eps };
        let activation = Activation::from_config(&c.hidden_act)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| ClipLayer::load(&v.at(format!("encoder.layers.{i}")), sizes, activation, false))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipVisionModel {
            pre_norm: LayerNorm::load(&v.at("pre_layrnorm"), d, eps)?,
            post_norm: LayerNorm::load(&v.at("post_layernorm"), d, eps)?,
            projection: Linear::load(&w.at("visual_projection"), d, c.projection_dim, false)?,
            config: c,
            patch_embedding,
            class_embedding,
            position_embedding,
            layers,
            dtype,
            device,
        })
    }

    /// Its config.
    pub fn config(&self) -> &ImageEncoderConfig {
        &self.config
    }

    /// `pixels [B, S, S, 3]` -> `image_embeds [B, projection_dim]` (f32 values in the model's
    /// dtype).
    pub fn image_embeds(&self, pixels: &Tensor) -> Result<Tensor> {
        let s = self.config.image_size;
        let b = match pixels.dims() {
            &[b, h, w, 3] if h == s && w == s && b > 0 => b,
            dims => {
                return Err(ModelError::input(
                    "clip vision encoder",
                    format!("pixels must be [B, {s}, {s}, 3], got {dims:?}"),
                ));
            }
        };
        let d = self.config.hidden_size;
        let x = pixels.to_dtype(self.dtype)?.to_device(self.device)?;
        let patches = self.patch_embedding.forward(&x)?; // [B, S/P, S/P, D]
        let n = patches.dims()[1] * patches.dims()[2];
        let patches = patches.reshape(&[b, n, d])?; // row-major patches, as torch's flatten
        let class: Vec<&Tensor> = std::iter::repeat_n(&self.class_embedding, b).collect();
        let class = Tensor::concat(&class, 0)?; // [B, 1, D]
        let mut x = Tensor::concat(&[&class, &patches], 1)?.add(&self.position_embedding)?; // [B, 1 + n, D]
        x = self.pre_norm.forward(&x)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        let cls = self.post_norm.forward(&x.narrow(1, 0, 1)?.reshape(&[b, d])?)?; // [B, D]
        self.projection.forward(&cls)
    }
}
