//! One pre-norm transformer layer of CLIP's towers: self-attention (causal in the text tower),
//! then the MLP, each behind a layer norm and added back to the residual stream.

use kiln_runtime::Tensor;

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
                "clip",
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

/// The widths of one layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerSizes {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub eps: f32,
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
    /// Whether a position attends only to itself and earlier ones (the text tower).
    causal: bool,
}

impl ClipLayer {
    /// Loads one `encoder.layers.{i}` (`w` points there).
    pub(crate) fn load(
        w: &Weights,
        sizes: LayerSizes,
        activation: Activation,
        causal: bool,
    ) -> Result<ClipLayer> {
        let (d, eps) = (sizes.hidden, sizes.eps);
        let attn = w.at("self_attn");
        Ok(ClipLayer {
            norm1: LayerNorm::load(&w.at("layer_norm1"), d, eps)?,
            q: Linear::load(&attn.at("q_proj"), d, d, true)?,
            k: Linear::load(&attn.at("k_proj"), d, d, true)?,
            v: Linear::load(&attn.at("v_proj"), d, d, true)?,
            out: Linear::load(&attn.at("out_proj"), d, d, true)?,
            norm2: LayerNorm::load(&w.at("layer_norm2"), d, eps)?,
            fc1: Linear::load(&w.at("mlp.fc1"), d, sizes.intermediate, true)?,
            fc2: Linear::load(&w.at("mlp.fc2"), sizes.intermediate, d, true)?,
            heads: sizes.heads,
            activation,
            causal,
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
        let scale = 1.0 / (d as f32).sqrt();
        let attn = if self.causal {
            Tensor::causal_attention(&q, &k, &v, scale)?
        } else {
            Tensor::attention(&q, &k, &v, scale)?
        };
        let attn = attn.reshape(&[b, l, c])?; // [B, L, C]
        let x = x.add(&self.out.forward(&attn)?)?;
        let hidden = self.activation.apply(&self.fc1.forward(&self.norm2.forward(&x)?)?)?; // [B, L, I]
        Ok(x.add(&self.fc2.forward(&hidden)?)?)
    }
}
