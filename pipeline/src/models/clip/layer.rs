//! One pre-norm transformer layer of CLIP's text tower: causal self-attention, then the MLP,
//! each behind a layer norm and added back to the residual stream.

use kiln_runtime::Tensor;
use kiln_runtime::checkpoint::TextEncoderConfig;

use crate::models::nn::{LayerNorm, Linear};
use crate::models::{ModelError, Result, Weights};

/// The MLP's activation, from the config's `hidden_act`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`: OpenAI CLIP-L.
    QuickGelu,
    /// Exact (erf) GELU: OpenCLIP-G.
    Gelu,
}

impl Activation {
    /// Reads transformers' `hidden_act` name.
    pub fn from_config(name: &str) -> Result<Activation> {
        match name {
            "quick_gelu" => Ok(Activation::QuickGelu),
            "gelu" => Ok(Activation::Gelu),
            other => Err(ModelError::input(
                "clip text encoder",
                format!("hidden_act {other:?} is not supported (quick_gelu or gelu)"),
            )),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        const K: f32 = 1.702;
        Ok(match self {
            // x * sigmoid(K x) = silu(K x) / K
            Activation::QuickGelu => x.affine(K, 0.0)?.silu()?.affine(1.0 / K, 0.0)?,
            Activation::Gelu => x.gelu()?,
        })
    }
}

/// `CLIPEncoderLayer`.
#[derive(Clone, Debug)]
pub(crate) struct ClipLayer {
    norm1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    activation: Activation,
}

impl ClipLayer {
    /// Loads `text_model.encoder.layers.{i}` (`w` points there).
    pub(crate) fn load(w: &Weights, c: &TextEncoderConfig, activation: Activation) -> Result<ClipLayer> {
        let (d, eps) = (c.hidden_size, c.layer_norm_eps as f32);
        let attn = w.at("self_attn");
        Ok(ClipLayer {
            norm1: LayerNorm::load(&w.at("layer_norm1"), d, eps)?,
            q: Linear::load(&attn.at("q_proj"), d, d, true)?,
            k: Linear::load(&attn.at("k_proj"), d, d, true)?,
            v: Linear::load(&attn.at("v_proj"), d, d, true)?,
            out: Linear::load(&attn.at("out_proj"), d, d, true)?,
            norm2: LayerNorm::load(&w.at("layer_norm2"), d, eps)?,
            fc1: Linear::load(&w.at("mlp.fc1"), d, c.intermediate_size, true)?,
            fc2: Linear::load(&w.at("mlp.fc2"), c.intermediate_size, d, true)?,
            heads: c.num_attention_heads,
            activation,
        })
    }

    /// `x [B, L, C] -> [B, L, C]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [b, l, c] = x.dims_n::<3>("clip layer")?;
        let h = self.heads;
        let d = c / h;
        let normed = self.norm1.forward(x)?;
        let q = self.q.forward(&normed)?.reshape(&[b, l, h, d])?; // [B, L, H, D]
        let k = self.k.forward(&normed)?.reshape(&[b, l, h, d])?;
        let v = self.v.forward(&normed)?.reshape(&[b, l, h, d])?;
        let attn = Tensor::causal_attention(&q, &k, &v, 1.0 / (d as f32).sqrt())?.reshape(&[b, l, c])?; // [B, L, C]
        let x = x.add(&self.out.forward(&attn)?)?;
        let hidden = self.activation.apply(&self.fc1.forward(&self.norm2.forward(&x)?)?)?; // [B, L, I]
        Ok(x.add(&self.fc2.forward(&hidden)?)?)
    }
}
