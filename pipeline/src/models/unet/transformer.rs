//! diffusers' `Transformer2DModel` with its `BasicTransformerBlock`s: the UNet's spatial
//! self-attention, cross-attention on the text context and GEGLU feed-forward.

use kiln_runtime::Tensor;

use super::Sizes;
use super::ip::{Cond, IpCall};
use crate::models::nn::{GroupNorm, LayerNorm, Linear};
use crate::models::{Result, Weights};

/// diffusers' `Transformer2DModel` norm epsilon (fixed, unlike the resnets' `norm_eps`).
const TRANSFORMER_GROUP_NORM_EPS: f32 = 1e-6;
/// `BasicTransformerBlock`'s layer-norm epsilon.
const LAYER_NORM_EPS: f32 = 1e-5;

/// Multi-head attention with bias-free q/k/v projections and a biased output projection.
#[derive(Clone, Debug)]
struct Attention {
    heads: usize,
    head_dim: usize,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl Attention {
    /// Loads `to_q`, `to_k`, `to_v`, `to_out.0` under `w`; keys and values come from
    /// `kv_dim`-wide tokens (`dim` for self-attention, the context width for cross-attention).
    fn load(w: &Weights, dim: usize, kv_dim: usize, heads: usize) -> Result<Self> {
        Ok(Attention {
            heads,
            head_dim: dim / heads,
            to_q: Linear::load(&w.at("to_q"), dim, dim, false)?,
            to_k: Linear::load(&w.at("to_k"), kv_dim, dim, false)?,
            to_v: Linear::load(&w.at("to_v"), kv_dim, dim, false)?,
            to_out: Linear::load(&w.at("to_out.0"), dim, dim, true)?,
        })
    }

    /// `x [B, L, C]` attending to `kv [B, Lk, Ckv]` -> `[B, L, C]`; with `ip` (cross-attention
    /// layer `slot` under an IP-Adapter), plus the scaled attention to the image tokens, added
    /// before the output projection (diffusers' `IPAdapterAttnProcessor2_0`).
    fn forward(&self, x: &Tensor, kv: &Tensor, ip: Option<(&IpCall, usize)>) -> Result<Tensor> {
        let (b, l, lk) = (x.dims()[0], x.dims()[1], kv.dims()[1]);
        let split = |t: Tensor, len: usize| t.reshape(&[b, len, self.heads, self.head_dim]);
        let q = split(self.to_q.forward(x)?, l)?; // [B, L, H, D]
        let k = split(self.to_k.forward(kv)?, lk)?; // [B, Lk, H, D]
        let v = split(self.to_v.forward(kv)?, lk)?;
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        let mut out = Tensor::attention(&q, &k, &v, scale)?.reshape(&[b, l, self.heads * self.head_dim])?;
        if let Some((call, slot)) = ip {
            if let Some(extra) = call.attend(slot, &q, scale, self.heads, self.head_dim)? {
                out = out.add(&extra)?;
            }
        }
        self.to_out.forward(&out)
    }
}

/// `BasicTransformerBlock`: pre-norm self-attention, cross-attention, GEGLU feed-forward, each
/// with a residual.
#[derive(Clone, Debug)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    /// `ff.net.0.proj`: `dim -> 2 × 4 dim` (hidden and gate).
    ff_in: Linear,
    /// `ff.net.2`: `4 dim -> dim`.
    ff_out: Linear,
    /// Its cross-attention's place in diffusers' processor order (down, up, mid blocks): the
    /// IP-Adapter layer `ip_adapter.{2 slot + 1}` it takes.
    slot: usize,
}

impl TransformerBlock {
    fn load(w: &Weights, dim: usize, context_dim: usize, heads: usize, slot: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(TransformerBlock {
            norm1: LayerNorm::load(&w.at("norm1"), dim, LAYER_NORM_EPS)?,
            attn1: Attention::load(&w.at("attn1"), dim, dim, heads)?,
            norm2: LayerNorm::load(&w.at("norm2"), dim, LAYER_NORM_EPS)?,
            attn2: Attention::load(&w.at("attn2"), dim, context_dim, heads)?,
            norm3: LayerNorm::load(&w.at("norm3"), dim, LAYER_NORM_EPS)?,
            ff_in: Linear::load(&w.at("ff.net.0.proj"), dim, 2 * inner, true)?,
            ff_out: Linear::load(&w.at("ff.net.2"), inner, dim, true)?,
            slot,
        })
    }

    /// `x [B, L, C]`, the text context `[B, Lc, Cc]` (and IP-Adapter tokens) -> `[B, L, C]`.
    fn forward(&self, x: &Tensor, cond: &Cond) -> Result<Tensor> {
        let h = self.norm1.forward(x)?;
        let x = x.add(&self.attn1.forward(&h, &h, None)?)?;
        let ip = cond.ip.map(|call| (call, self.slot));
        let x = x.add(&self.attn2.forward(&self.norm2.forward(&x)?, cond.context, ip)?)?;
        let ff = self.ff_out.forward(&self.ff_in.forward(&self.norm3.forward(&x)?)?.geglu()?)?;
        Ok(x.add(&ff)?)
    }
}

/// `Transformer2DModel`: group norm, `proj_in` (a 1×1 conv in SD 1.5, a linear in SDXL: the
/// same map over NHWC channels), `depth` transformer blocks, `proj_out`, plus the input.
#[derive(Clone, Debug)]
pub(super) struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Linear,
    blocks: Vec<TransformerBlock>,
    proj_out: Linear,
}

impl SpatialTransformer {
    /// Loads the transformer under `w` (`down_blocks.1.attentions.0`, ...) for `channels`-wide
    /// activations with `heads` heads and `depth` blocks, whose cross-attentions take the
    /// processor slots from `first_slot` on.
    pub(super) fn load(
        w: &Weights,
        s: &Sizes,
        channels: usize,
        (heads, depth): (usize, usize),
        first_slot: usize,
    ) -> Result<Self> {
        let blocks = (0..depth)
            .map(|i| {
                TransformerBlock::load(
                    &w.at(format!("transformer_blocks.{i}")),
                    channels,
                    s.context_dim,
                    heads,
                    first_slot + i,
                )
            })
            .collect::<Result<_>>()?;
        Ok(SpatialTransformer {
            norm: GroupNorm::load(&w.at("norm"), s.groups, channels, TRANSFORMER_GROUP_NORM_EPS)?,
            proj_in: Linear::load(&w.at("proj_in"), channels, channels, true)?,
            blocks,
            proj_out: Linear::load(&w.at("proj_out"), channels, channels, true)?,
        })
    }

    /// `x [B, H, W, C]` under `cond` -> `[B, H, W, C]`.
    pub(super) fn forward(&self, x: &Tensor, cond: &Cond) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (b, c) = (dims[0], dims[3]);
        let h = self.norm.forward(x, false)?.reshape(&[b, dims[1] * dims[2], c])?; // [B, HW, C]
        let mut h = self.proj_in.forward(&h)?;
        for block in &self.blocks {
            h = block.forward(&h, cond)?;
        }
        let h = self.proj_out.forward(&h)?.reshape(&dims)?; // [B, H, W, C]
        Ok(h.add(x)?)
    }
}
