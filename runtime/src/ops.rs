//! The op interface: methods on [`Tensor`] that check shapes, dtypes and devices once, then
//! dispatch on the operands' storage.
//!
//! Every op here is the whole contract a backend implements: the checks live in this file
//! only, so a backend function receives validated sizes and cannot be handed a bad shape. The
//! dispatch is a `match` on the first operand's [`Storage`] (the others are on the same device,
//! which the checks guarantee); the CUDA backend's arm (`Storage::Cuda`, with the `cuda` feature)
//! delegates to one module per family of ops under `crate::cuda`.
//!
//! Conventions shared by all ops:
//! - activations are NHWC (`[N, H, W, C]`) and token sequences `[N, L, C]`;
//! - all operands of one op share a dtype ([`Error::DTypeMismatch`]) and a device
//!   ([`Error::DeviceMismatch`]); the result has that dtype and device;
//! - arithmetic accumulates in f32 whatever the storage dtype, and the result is rounded back
//!   to it once;
//! - bad shapes are [`Error::Shape`] or [`Error::Rank`] naming the op and the shapes, never a
//!   panic.
//!
//! The data-movement ops (upsampling, concatenation, permutation, narrowing, chunking) are
//! defined in a submodule of this one, and the parameter structs are [`Conv2dParams`] and
//! [`TimestepEmbeddingParams`].

mod layout;
mod params;

pub use params::{Conv2dParams, TimestepEmbeddingParams};

use crate::cpu::attention::AttentionGeometry;
use crate::cpu::binary::BinaryOp;
use crate::cpu::conv::ConvGeometry;
use crate::cpu::{self, activation, binary, norm};
#[cfg(feature = "cuda")]
use crate::cuda;
use crate::profile::{self, OpFamily};
use crate::{CpuStorage, DType, Device, Error, Result, Storage, Tensor};

/// Checks that `others` share `first`'s dtype and device.
fn check_operands<'a>(
    op: &'static str,
    first: &Tensor,
    others: impl IntoIterator<Item = &'a Tensor>,
) -> Result<()> {
    for t in others {
        if t.dtype() != first.dtype() {
            return Err(Error::DTypeMismatch { op, lhs: first.dtype(), rhs: t.dtype() });
        }
        if t.device() != first.device() {
            return Err(Error::DeviceMismatch { op, lhs: first.device(), rhs: t.device() });
        }
    }
    Ok(())
}

/// Checks that the operand called `name` has shape `expected`.
fn expect_dims(op: &'static str, name: &str, t: &Tensor, expected: &[usize], context: &Tensor) -> Result<()> {
    if t.dims() == expected {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("{name} has shape {:?}, expected {expected:?} for input {:?}", t.dims(), context.dims()),
        ))
    }
}

/// The last dimension and the product of the others; a rank-0 tensor is an error.
fn split_last(op: &'static str, t: &Tensor) -> Result<(usize, usize)> {
    match t.dims().split_last() {
        Some((&c, lead)) => Ok((lead.iter().product(), c)),
        None => Err(Error::shape(op, "expected at least one dimension, got a scalar (shape [])")),
    }
}

/// The host storage of an operand whose device the op has already matched to the first one.
fn host<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a CpuStorage> {
    t.cpu_storage().ok_or(Error::DeviceMismatch { op, lhs: Device::Cpu, rhs: t.device() })
}

/// The host storage of an optional operand.
fn host_opt<'a>(op: &'static str, t: Option<&'a Tensor>) -> Result<Option<&'a CpuStorage>> {
    t.map(|t| host(op, t)).transpose()
}

/// The numpy broadcast of two shapes, or `None` when some aligned pair differs and neither is 1.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Some(x),
            (1, y) => Some(y),
            _ => None,
        })
        .collect()
}

impl Tensor {
    /// Linear layer: `x [.., K]` times `weight [N, K]` (PyTorch's `nn.Linear` layout, not
    /// transposed) plus `bias [N]` -> `[.., N]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Matmul);
        const OP: &str = "linear";
        check_operands(OP, self, std::iter::once(weight).chain(bias))?;
        let (m, k) = split_last(OP, self)?; // x: [M, K]
        let [n, wk] = weight.dims_n::<2>(OP)?;
        if wk != k {
            return Err(Error::shape(
                OP,
                format!("input {:?} has {k} features but weight {:?} takes {wk}", self.dims(), weight.dims()),
            ));
        }
        if let Some(b) = bias {
            expect_dims(OP, "bias", b, &[n], self)?;
        }
        let shape = [&self.dims()[..self.rank() - 1], &[n]].concat(); // [.., N]
        profile::count_flops(OpFamily::Matmul, 2 * (m * n * k) as u64);
        match self.storage() {
            Storage::Cpu(x) => {
                let out = cpu::matmul::linear(x, host(OP, weight)?, host_opt(OP, bias)?, (m, k, n));
                Tensor::from_cpu_storage(out, &shape)
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::matmul::linear(x, weight, bias, (m, k, n), &shape),
        }
    }

    /// Matrix product `[M, K] x [K, N] -> [M, N]`, or batched `[B, M, K] x [B, K, N] -> [B, M, N]`.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Matmul);
        const OP: &str = "matmul";
        check_operands(OP, self, [rhs])?;
        let (batch, m, k, kr, n) = match (self.dims(), rhs.dims()) {
            (&[m, k], &[kr, n]) => (None, m, k, kr, n),
            (&[b, m, k], &[br, kr, n]) if b == br => (Some(b), m, k, kr, n),
            (a, b) => {
                return Err(Error::shape(
                    OP,
                    format!("expected [M, K] x [K, N] or [B, M, K] x [B, K, N], got {a:?} x {b:?}"),
                ));
            }
        };
        if k != kr {
            return Err(Error::shape(
                OP,
                format!("inner dimensions differ: {:?} x {:?}", self.dims(), rhs.dims()),
            ));
        }
        let shape = match batch {
            Some(b) => vec![b, m, n], // [B, M, N]
            None => vec![m, n],       // [M, N]
        };
        profile::count_flops(OpFamily::Matmul, 2 * (batch.unwrap_or(1) * m * n * k) as u64);
        match self.storage() {
            Storage::Cpu(a) => {
                let out = cpu::matmul::matmul(a, host(OP, rhs)?, (batch.unwrap_or(1), m, k, n));
                Tensor::from_cpu_storage(out, &shape)
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(a) => cuda::matmul::matmul(a, rhs, (batch.unwrap_or(1), m, k, n), &shape),
        }
    }

    /// 2-d convolution: NHWC input `[N, H, W, Cin]`, weight `[Cout, kh, kw, Cin]` (OHWI), bias
    /// `[Cout]` -> `[N, Ho, Wo, Cout]` with `Ho = (H + 2 padding - kh) / stride + 1`.
    ///
    /// The weight layout is OHWI, not PyTorch's OIHW: checkpoint loaders permute each conv
    /// weight once at load (`weight.permute(&[0, 2, 3, 1])`), so that the kernel's patches and
    /// the weight rows are both contiguous in the same `(ky, kx, ci)` order.
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, params: Conv2dParams) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Conv);
        const OP: &str = "conv2d";
        check_operands(OP, self, std::iter::once(weight).chain(bias))?;
        let [n, h, w, cin] = self.dims_n::<4>(OP)?;
        let [cout, kh, kw, wcin] = weight.dims_n::<4>(OP)?;
        let Conv2dParams { stride, padding: pad } = params;
        let geometry = || format!("input {:?}, weight {:?} (OHWI), {params:?}", self.dims(), weight.dims());
        if wcin != cin {
            return Err(Error::shape(OP, format!("input and weight channels differ: {}", geometry())));
        }
        if stride == 0 || kh == 0 || kw == 0 {
            return Err(Error::shape(OP, format!("stride and kernel size must be positive: {}", geometry())));
        }
        if h + 2 * pad < kh || w + 2 * pad < kw {
            return Err(Error::shape(OP, format!("kernel larger than the padded input: {}", geometry())));
        }
        if let Some(b) = bias {
            expect_dims(OP, "bias", b, &[cout], self)?;
        }
        let (ho, wo) = ((h + 2 * pad - kh) / stride + 1, (w + 2 * pad - kw) / stride + 1);
        let g = ConvGeometry { n, h, w, cin, cout, kh, kw, stride, pad, ho, wo };
        profile::count_flops(OpFamily::Conv, 2 * (n * ho * wo * cout * kh * kw * cin) as u64);
        match self.storage() {
            Storage::Cpu(x) => {
                let out = cpu::conv::conv2d(x, host(OP, weight)?, host_opt(OP, bias)?, g);
                Tensor::from_cpu_storage(out, &[n, ho, wo, cout]) // [N, Ho, Wo, Cout]
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::conv::conv2d(x, weight, bias, g, &[n, ho, wo, cout]),
        }
    }

    /// Group norm over channels-last `x [N, .., C]` (NHWC or `[N, L, C]`), as `nn.GroupNorm`:
    /// mean and biased variance per (sample, group) over every position and the group's
    /// `C / groups` channels, then `gamma [C]` and `beta [C]` per channel, then SiLU if `silu`.
    pub fn group_norm(
        &self,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
        silu: bool,
    ) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Norm);
        const OP: &str = "group_norm";
        check_operands(OP, self, [gamma, beta])?;
        let dims = self.dims();
        let (n, c) = match (dims.first(), dims.last()) {
            (Some(&n), Some(&c)) if dims.len() >= 2 => (n, c),
            _ => return Err(Error::shape(OP, format!("expected [N, .., C], got {dims:?}"))),
        };
        let l = dims[1..dims.len() - 1].iter().product(); // x: [N, L, C]
        if groups == 0 || c % groups != 0 {
            return Err(Error::shape(
                OP,
                format!("{c} channels of {dims:?} do not split into {groups} groups"),
            ));
        }
        expect_dims(OP, "gamma", gamma, &[c], self)?;
        expect_dims(OP, "beta", beta, &[c], self)?;
        match self.storage() {
            Storage::Cpu(x) => {
                let out =
                    norm::group_norm(x, host(OP, gamma)?, host(OP, beta)?, (n, l, c), groups, eps, silu);
                Tensor::from_cpu_storage(out, dims)
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::norm::group_norm(x, gamma, beta, (n, l, c), groups, eps, silu, dims),
        }
    }

    /// Layer norm over the last dimension `C`, as `nn.LayerNorm(C)`, with `gamma [C]`, `beta [C]`.
    pub fn layer_norm(&self, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Norm);
        const OP: &str = "layer_norm";
        check_operands(OP, self, [gamma, beta])?;
        let (_, c) = split_last(OP, self)?;
        expect_dims(OP, "gamma", gamma, &[c], self)?;
        expect_dims(OP, "beta", beta, &[c], self)?;
        match self.storage() {
            Storage::Cpu(x) => {
                let out = norm::layer_norm(x, host(OP, gamma)?, host(OP, beta)?, c, eps);
                Tensor::from_cpu_storage(out, self.dims())
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::norm::layer_norm(x, gamma, beta, c, eps, self.dims()),
        }
    }

    /// Softmax over the last dimension, with the row maximum subtracted first.
    pub fn softmax(&self) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Elementwise);
        let (_, c) = split_last("softmax", self)?;
        match self.storage() {
            Storage::Cpu(x) => Tensor::from_cpu_storage(cpu::softmax::softmax(x, c), self.dims()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::norm::softmax(x, c, self.dims()),
        }
    }

    /// Multi-head attention `softmax(scale * Q K^T) V` for each batch and head:
    /// `q [B, Lq, H, D]`, `k` and `v` `[B, Lk, H, D]` -> `[B, Lq, H, D]`.
    ///
    /// The layout is that of the `[B, L, H*D]` projections reshaped, so no transpose is needed
    /// on either side. Self-attention has `Lk = Lq`, cross-attention on CLIP tokens `Lk = 77`;
    /// the usual `scale` is `1 / sqrt(D)`. The `[Lq, Lk]` score matrix is never materialised
    /// whole: see [`crate::cpu::attention`].
    pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Attention);
        Tensor::attention_masked("attention", q, k, v, scale, false)
    }

    /// [`Tensor::attention`] with a causal mask, as CLIP's text transformer uses: query `i`
    /// attends to keys `0..=i` only. Needs `Lq == Lk`.
    pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Attention);
        Tensor::attention_masked("causal_attention", q, k, v, scale, true)
    }

    fn attention_masked(
        op: &'static str,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f32,
        causal: bool,
    ) -> Result<Tensor> {
        check_operands(op, q, [k, v])?;
        let [b, lq, h, d] = q.dims_n::<4>(op)?;
        let [kb, lk, kh, kd] = k.dims_n::<4>(op)?;
        if k.dims() != v.dims() || (kb, kh, kd) != (b, h, d) || lk == 0 || (causal && lk != lq) {
            let lengths = if causal { "Lk = Lq > 0" } else { "Lk > 0" };
            return Err(Error::shape(
                op,
                format!(
                    "expected q [B, Lq, H, D] and k, v [B, Lk, H, D] with {lengths}, got q {:?}, k {:?}, v {:?}",
                    q.dims(),
                    k.dims(),
                    v.dims()
                ),
            ));
        }
        let g = AttentionGeometry { b, lq, lk, h, d, causal };
        profile::count_flops(OpFamily::Attention, 4 * (b * h * lq * lk * d) as u64);
        match q.storage() {
            Storage::Cpu(qs) => {
                let out = cpu::attention::attention(qs, host(op, k)?, host(op, v)?, g, scale);
                Tensor::from_cpu_storage(out, q.dims()) // [B, Lq, H, D]
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(qs) => cuda::attention::attention(qs, k, v, g, scale, q.dims()),
        }
    }

    /// GELU, exact erf form (PyTorch's default `F.gelu`), element-wise.
    pub fn gelu(&self) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Activation);
        match self.storage() {
            Storage::Cpu(x) => Tensor::from_cpu_storage(activation::gelu(x), self.dims()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::elementwise::gelu(x, self.dims()),
        }
    }

    /// SiLU, `x * sigmoid(x)`, element-wise.
    pub fn silu(&self) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Activation);
        match self.storage() {
            Storage::Cpu(x) => Tensor::from_cpu_storage(activation::silu(x), self.dims()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::elementwise::silu(x, self.dims()),
        }
    }

    /// GEGLU as in diffusers: `x [.., 2N]` splits into `hidden, gate` along the last dimension
    /// and the result `[.., N]` is `hidden * gelu(gate)`.
    pub fn geglu(&self) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Activation);
        const OP: &str = "geglu";
        let (_, c2) = split_last(OP, self)?;
        if c2 % 2 != 0 {
            return Err(Error::shape(
                OP,
                format!("last dimension of {:?} is odd; cannot split into hidden and gate", self.dims()),
            ));
        }
        let shape = [&self.dims()[..self.rank() - 1], &[c2 / 2]].concat(); // [.., N]
        match self.storage() {
            Storage::Cpu(x) => Tensor::from_cpu_storage(activation::geglu(x, c2 / 2), &shape),
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::elementwise::geglu(x, c2 / 2, &shape),
        }
    }

    /// Element-wise sum with numpy broadcasting.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Elementwise);
        self.broadcast_binary("add", BinaryOp::Add, rhs)
    }

    /// Element-wise product with numpy broadcasting.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Elementwise);
        self.broadcast_binary("mul", BinaryOp::Mul, rhs)
    }

    fn broadcast_binary(&self, op: &'static str, bop: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        check_operands(op, self, [rhs])?;
        let shape = broadcast_shape(self.dims(), rhs.dims()).ok_or_else(|| {
            Error::shape(op, format!("shapes {:?} and {:?} do not broadcast", self.dims(), rhs.dims()))
        })?;
        match self.storage() {
            Storage::Cpu(a) => {
                let out = binary::binary(bop, a, self.dims(), host(op, rhs)?, rhs.dims(), &shape);
                Tensor::from_cpu_storage(out, &shape)
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(a) => cuda::elementwise::binary(op, bop, a, self.dims(), rhs, &shape),
        }
    }

    /// `x * mul + add`, element-wise (computed in f32, rounded once).
    pub fn affine(&self, mul: f32, add: f32) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Elementwise);
        match self.storage() {
            Storage::Cpu(x) => Tensor::from_cpu_storage(binary::affine(x, mul, add), self.dims()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::elementwise::affine(x, mul, add, self.dims()),
        }
    }

    /// Sinusoidal embeddings of `timesteps` -> `[timesteps.len(), dim]`, matching diffusers'
    /// `get_timestep_embedding` (the UNets use [`TimestepEmbeddingParams::default`]).
    ///
    /// The values are computed on the host in f32, then stored as `dtype` on `device`.
    pub fn timestep_embedding(
        timesteps: &[f32],
        dim: usize,
        params: TimestepEmbeddingParams,
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Elementwise);
        let data = cpu::embedding::timestep_embedding(timesteps, dim, params);
        Tensor::from_f32(data, &[timesteps.len(), dim], dtype, device) // [N, dim]
    }
}

#[cfg(test)]
mod tests {
    use super::broadcast_shape;

    #[test]
    fn broadcast_shapes_follow_numpy() {
        assert_eq!(broadcast_shape(&[2, 3, 4], &[4]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shape(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shape(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shape(&[2, 3], &[2]), None);
    }
}
