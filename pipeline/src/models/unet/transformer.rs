//! diffusers' `Transformer2DModel` with its `BasicTransformerBlock`s: the UNet's spatial
//! self-attention, cross-attention on the text context and GEGLU feed-forward.

use kiln_runtime::{DType, Device, Tensor};

use super::Sizes;
use crate::models::nn::{GroupNorm, LayerNorm, Linear};
use crate::models::{Result, Weights};

/// diffusers' `Transformer2DModel` norm epsilon (fixed, unlike the resnets' `norm_eps`).
const TRANSFORMER_GROUP_NORM_EPS: f32 = 1e-6;
/// `BasicTransformerBlock`'s layer-norm epsilon.
const LAYER_NORM_EPS: f32 = 1e-5;

/// Head widths CUDA's flash-attention kernels are instantiated for (kiln-kernels'
/// `AttentionKernel::HEAD_DIMS`). The published models' heads (40, 80, 160; 64) all have one;
/// other widths (reduced test models) are zero-padded up to the next one at load.
const CUDA_HEAD_DIMS: [usize; 5] = [40, 64, 80, 128, 160];

/// The head width attention runs at on `device` for heads `head_dim` wide.
fn kernel_head_dim(head_dim: usize, device: Device) -> usize {
    if device.is_cpu() { head_dim } else { cuda_head_dim(head_dim) }
}

/// The narrowest CUDA kernel width that holds `head_dim` (itself when none does: the op then
/// reports it unsupported).
fn cuda_head_dim(head_dim: usize) -> usize {
    CUDA_HEAD_DIMS.iter().copied().find(|&d| d >= head_dim).unwrap_or(head_dim)
}

/// The weight `[rows, cols]` under `w`, with every run of `d` entries along `axis` (0: rows,
/// 1: columns) widened to `padded` by zeros: per-head padding of a projection.
fn padded_weight(w: &Weights, shape: [usize; 2], axis: usize, d: usize, padded: usize) -> Result<Tensor> {
    let [rows, cols] = shape;
    if padded == d {
        return w.tensor("weight", &shape);
    }
    let m = w.host("weight", &shape, DType::F32)?.to_vec_f32()?;
    let widen = |i: usize| i / d * padded + i % d;
    let out_shape = if axis == 0 { [rows / d * padded, cols] } else { [rows, cols / d * padded] };
    let mut out = vec![0f32; out_shape[0] * out_shape[1]];
    for r in 0..rows {
        for c in 0..cols {
            let (rr, cc) = if axis == 0 { (widen(r), c) } else { (r, widen(c)) };
            out[rr * out_shape[1] + cc] = m[r * cols + c];
        }
    }
    Ok(Tensor::from_f32(out, &out_shape, w.dtype(), w.device())?)
}

/// Multi-head attention with bias-free q/k/v projections and a biased output projection.
/// Heads run `padded_head_dim` wide: zero query/key/value columns change no score and give zero
/// outputs, which the output projection's zero columns drop, so the result is exact.
#[derive(Clone, Debug)]
struct Attention {
    heads: usize,
    head_dim: usize,
    padded_head_dim: usize,
    /// `[heads × padded, dim]`, likewise `to_k`, `to_v` (`[heads × padded, kv_dim]`).
    to_q: Tensor,
    to_k: Tensor,
    to_v: Tensor,
    /// `[dim, heads × padded]` and its bias `[dim]`.
    to_out: Tensor,
    to_out_bias: Tensor,
}

impl Attention {
    /// Loads `to_q`, `to_k`, `to_v`, `to_out.0` under `w`; keys and values come from
    /// `kv_dim`-wide tokens (`dim` for self-attention, the context width for cross-attention).
    fn load(w: &Weights, dim: usize, kv_dim: usize, heads: usize) -> Result<Self> {
        Attention::load_padded(w, dim, kv_dim, heads, kernel_head_dim(dim / heads, w.device()))
    }

    /// [`Attention::load`] with heads padded to `padded` wide.
    fn load_padded(w: &Weights, dim: usize, kv_dim: usize, heads: usize, padded: usize) -> Result<Self> {
        let d = dim / heads;
        Ok(Attention {
            heads,
            head_dim: d,
            padded_head_dim: padded,
            to_q: padded_weight(&w.at("to_q"), [dim, dim], 0, d, padded)?,
            to_k: padded_weight(&w.at("to_k"), [dim, kv_dim], 0, d, padded)?,
            to_v: padded_weight(&w.at("to_v"), [dim, kv_dim], 0, d, padded)?,
            to_out: padded_weight(&w.at("to_out.0"), [dim, dim], 1, d, padded)?,
            to_out_bias: w.at("to_out.0").tensor("bias", &[dim])?,
        })
    }

    /// `x [B, L, C]` attending to `kv [B, Lk, Ckv]` -> `[B, L, C]`.
    fn forward(&self, x: &Tensor, kv: &Tensor) -> Result<Tensor> {
        let (b, l, lk) = (x.dims()[0], x.dims()[1], kv.dims()[1]);
        let dp = self.padded_head_dim;
        let q = x.linear(&self.to_q, None)?.reshape(&[b, l, self.heads, dp])?; // [B, L, H, Dp]
        let k = kv.linear(&self.to_k, None)?.reshape(&[b, lk, self.heads, dp])?; // [B, Lk, H, Dp]
        let v = kv.linear(&self.to_v, None)?.reshape(&[b, lk, self.heads, dp])?;
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        let out = Tensor::attention(&q, &k, &v, scale)?.reshape(&[b, l, self.heads * dp])?;
        Ok(out.linear(&self.to_out, Some(&self.to_out_bias))?)
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
}

impl TransformerBlock {
    fn load(w: &Weights, dim: usize, context_dim: usize, heads: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(TransformerBlock {
            norm1: LayerNorm::load(&w.at("norm1"), dim, LAYER_NORM_EPS)?,
            attn1: Attention::load(&w.at("attn1"), dim, dim, heads)?,
            norm2: LayerNorm::load(&w.at("norm2"), dim, LAYER_NORM_EPS)?,
            attn2: Attention::load(&w.at("attn2"), dim, context_dim, heads)?,
            norm3: LayerNorm::load(&w.at("norm3"), dim, LAYER_NORM_EPS)?,
            ff_in: Linear::load(&w.at("ff.net.0.proj"), dim, 2 * inner, true)?,
            ff_out: Linear::load(&w.at("ff.net.2"), inner, dim, true)?,
        })
    }

    /// `x [B, L, C]`, `context [B, Lc, Cc]` -> `[B, L, C]`.
    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let h = self.norm1.forward(x)?;
        let x = x.add(&self.attn1.forward(&h, &h)?)?;
        let x = x.add(&self.attn2.forward(&self.norm2.forward(&x)?, context)?)?;
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
    /// activations with `heads` heads and `depth` blocks.
    pub(super) fn load(w: &Weights, s: &Sizes, channels: usize, heads: usize, depth: usize) -> Result<Self> {
        let blocks = (0..depth)
            .map(|i| {
                TransformerBlock::load(
                    &w.at(format!("transformer_blocks.{i}")),
                    channels,
                    s.context_dim,
                    heads,
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

    /// `x [B, H, W, C]`, `context [B, Lc, Cc]` -> `[B, H, W, C]`.
    pub(super) fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (b, c) = (dims[0], dims[3]);
        let h = self.norm.forward(x, false)?.reshape(&[b, dims[1] * dims[2], c])?; // [B, HW, C]
        let mut h = self.proj_in.forward(&h)?;
        for block in &self.blocks {
            h = block.forward(&h, context)?;
        }
        let h = self.proj_out.forward(&h)?.reshape(&dims)?; // [B, H, W, C]
        Ok(h.add(x)?)
    }
}

#[cfg(test)]
mod tests {
    use kiln_runtime::checkpoint::{Checkpoint, Component};
    use kiln_runtime::{DType, Device, Tensor};

    use super::{Attention, cuda_head_dim, kernel_head_dim};
    use crate::models::Weights;

    #[test]
    fn cuda_head_widths_pad_to_the_next_kernel() {
        assert_eq!(kernel_head_dim(8, Device::Cpu), 8);
        let widths: Vec<usize> = [8, 16, 40, 41, 64, 96, 160, 200].map(cuda_head_dim).to_vec();
        assert_eq!(widths, [40, 40, 40, 64, 64, 128, 160, 200]);
    }

    /// Padding heads with zeros (as on CUDA for widths without a kernel) changes nothing.
    #[test]
    fn zero_padded_heads_give_the_same_attention() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny/sd15");
        let ckpt = Checkpoint::open(path).unwrap();
        let w = Weights::new(&ckpt, Component::Unet, DType::F32, Device::Cpu)
            .at("down_blocks.0.attentions.0.transformer_blocks.0");
        let (dim, ctx_dim, heads) = (16, 32, 2); // tiny SD 1.5: heads 8 wide
        let seq =
            |n: usize, seed: f32| -> Vec<f32> { (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect() };
        let x = Tensor::from_f32(seq(2 * 6 * dim, 0.5), &[2, 6, dim], DType::F32, Device::Cpu).unwrap();
        let ctx =
            Tensor::from_f32(seq(2 * 5 * ctx_dim, 1.5), &[2, 5, ctx_dim], DType::F32, Device::Cpu).unwrap();
        for (leaf, kv_dim, kv) in [("attn1", dim, &x), ("attn2", ctx_dim, &ctx)] {
            let plain = Attention::load_padded(&w.at(leaf), dim, kv_dim, heads, 8).unwrap();
            let padded = Attention::load_padded(&w.at(leaf), dim, kv_dim, heads, 40).unwrap();
            let a = plain.forward(&x, kv).unwrap().to_vec_f32().unwrap();
            let b = padded.forward(&x, kv).unwrap().to_vec_f32().unwrap();
            let diff = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            let scale = a.iter().map(|p| p.abs()).fold(0f32, f32::max);
            assert!(scale > 0.1 && diff <= 1e-5 * scale, "{leaf}: max diff {diff} (max |out| {scale})");
        }
    }
}
