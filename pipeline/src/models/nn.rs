//! The layers every model is built from, each loaded from [`Weights`] with the shapes its sizes
//! imply, so a checkpoint that does not fit its configuration fails at load, naming the tensor.

use kiln_runtime::Tensor;
use kiln_runtime::ops::Conv2dParams;

use super::patch::{PatchableWeight, WeightLayout};
use super::{Result, Weights};

/// `nn.Linear`: `x [.., in] -> [.., out]`, weight `[out, in]`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: PatchableWeight,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `weight` (and `bias` when `bias` is true) under `w`. A 1×1 convolution's weight
    /// `[out, in, 1, 1]` (SD 1.5's transformer projections, the VAE's old attention) is read as
    /// the same linear, since a 1×1 conv over NHWC is a linear over the channels.
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
        let expected: &[usize] =
            if w.shape("weight")?.len() == 4 { &[out_dim, in_dim, 1, 1] } else { &[out_dim, in_dim] };
        let weight = w.tensor("weight", expected)?.reshape(&[out_dim, in_dim])?;
        let weight = w.patchable_weight("weight", weight, WeightLayout::Linear);
        let bias = if bias { Some(w.tensor("bias", &[out_dim])?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// The output width.
    pub fn out_dim(&self) -> usize {
        self.weight.get().dims()[0]
    }

    /// A linear from tensors already read (`weight [out, in]`), for files outside a checkpoint.
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Linear {
        Linear { weight: PatchableWeight::new(weight, WeightLayout::Linear), bias }
    }

    /// `x [.., in] -> [.., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.linear(&self.weight.get(), self.bias.as_ref())?)
    }
}

/// `nn.Conv2d` over NHWC with a square kernel: `[N, H, W, in] -> [N, Ho, Wo, out]`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[out, k, k, in]`: the checkpoint's OIHW permuted once at load.
    weight: PatchableWeight,
    bias: Option<Tensor>,
    params: Conv2dParams,
}

impl Conv2d {
    /// Loads `weight [out, in, k, k]` and `bias [out]` under `w`.
    pub fn load(
        w: &Weights,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        params: Conv2dParams,
    ) -> Result<Conv2d> {
        let conv = Conv2d::load_without_bias(w, in_ch, out_ch, kernel, params)?;
        Ok(Conv2d { bias: Some(w.tensor("bias", &[out_ch])?), ..conv })
    }

    /// [`Conv2d::load`] for a convolution without a bias (CLIP's patch embedding).
    pub fn load_without_bias(
        w: &Weights,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        params: Conv2dParams,
    ) -> Result<Conv2d> {
        let oihw = w.host("weight", &[out_ch, in_ch, kernel, kernel], w.dtype())?;
        let weight = oihw.permute(&[0, 2, 3, 1])?.to_device(w.device())?; // [out, k, k, in]
        let weight = w.patchable_weight("weight", weight, WeightLayout::Conv);
        Ok(Conv2d { weight, bias: None, params })
    }

    /// A 3×3 convolution, stride 1, padding 1: the size-keeping conv of every resnet.
    pub fn load_3x3(w: &Weights, in_ch: usize, out_ch: usize) -> Result<Conv2d> {
        Conv2d::load(w, in_ch, out_ch, 3, Conv2dParams { stride: 1, padding: 1 })
    }

    /// The stride (1, or 2 for downsampling convs).
    pub fn stride(&self) -> usize {
        self.params.stride
    }

    /// `x [N, H, W, in] -> [N, Ho, Wo, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.conv2d(&self.weight.get(), self.bias.as_ref(), self.params)?)
    }
}

/// `nn.GroupNorm` over channels-last activations, with SiLU fused on request.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    groups: usize,
    eps: f32,
    gamma: Tensor,
    beta: Tensor,
}

impl GroupNorm {
    /// Loads `weight [channels]` and `bias [channels]` under `w`.
    pub fn load(w: &Weights, groups: usize, channels: usize, eps: f32) -> Result<GroupNorm> {
        Ok(GroupNorm {
            groups,
            eps,
            gamma: w.tensor("weight", &[channels])?,
            beta: w.tensor("bias", &[channels])?,
        })
    }

    /// Normalises `x [N, .., C]`, then applies SiLU when `silu` is true.
    pub fn forward(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        Ok(x.group_norm(self.groups, &self.gamma, &self.beta, self.eps, silu)?)
    }
}

/// `nn.LayerNorm` over the last dimension.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    eps: f32,
    gamma: Tensor,
    beta: Tensor,
}

impl LayerNorm {
    /// Loads `weight [dim]` and `bias [dim]` under `w`.
    pub fn load(w: &Weights, dim: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm { eps, gamma: w.tensor("weight", &[dim])?, beta: w.tensor("bias", &[dim])? })
    }

    /// A layer norm from tensors already read (`weight`, `bias`: `[dim]`).
    pub fn from_parts(gamma: Tensor, beta: Tensor, eps: f32) -> LayerNorm {
        LayerNorm { eps, gamma, beta }
    }

    /// Normalises `x [.., dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.layer_norm(&self.gamma, &self.beta, self.eps)?)
    }
}
