//! Layout ops: nearest upsampling, concatenation, permutation, narrowing and chunking.
//!
//! Tensors are always contiguous, so each of these materialises its result; they copy stored
//! elements without arithmetic, exactly, in the operands' dtype.

use super::{check_operands, host};
use crate::cpu::layout;
#[cfg(feature = "cuda")]
use crate::cuda;
use crate::profile::{self, OpFamily};
use crate::{CpuStorage, Error, Result, Storage, Tensor};

/// Checks that `dim` indexes a dimension of `t`.
fn check_dim(op: &'static str, t: &Tensor, dim: usize) -> Result<()> {
    if dim < t.rank() {
        Ok(())
    } else {
        Err(Error::shape(op, format!("dimension {dim} out of range for shape {:?}", t.dims())))
    }
}

impl Tensor {
    /// Nearest-neighbour 2x upsampling: `[N, H, W, C] -> [N, 2H, 2W, C]` (each pixel becomes a
    /// 2x2 block), as `F.interpolate(scale_factor=2.0, mode="nearest")`.
    pub fn upsample_nearest2x(&self) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Layout);
        let [n, h, w, c] = self.dims_n::<4>("upsample_nearest2x")?;
        match self.storage() {
            Storage::Cpu(x) => {
                let out = layout::upsample_nearest2x(x, (n, h, w, c));
                Tensor::from_cpu_storage(out, &[n, 2 * h, 2 * w, c]) // [N, 2H, 2W, C]
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::layout::upsample_nearest2x(x, (n, h, w, c)),
        }
    }

    /// Concatenates `tensors` along `dim`; their shapes must agree in every other dimension.
    pub fn concat(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Layout);
        const OP: &str = "concat";
        let Some((&first, rest)) = tensors.split_first() else {
            return Err(Error::shape(OP, "no tensors to concatenate"));
        };
        check_operands(OP, first, rest.iter().copied())?;
        check_dim(OP, first, dim)?;
        let fits = |t: &Tensor| {
            t.rank() == first.rank()
                && t.dims().iter().zip(first.dims()).enumerate().all(|(i, (a, b))| i == dim || a == b)
        };
        if !rest.iter().all(|t| fits(t)) {
            let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.dims()).collect();
            return Err(Error::shape(OP, format!("shapes {shapes:?} differ outside dimension {dim}")));
        }
        let outer: usize = first.dims()[..dim].iter().product();
        let inner: usize = first.dims()[dim + 1..].iter().product();
        let blocks: Vec<usize> = tensors.iter().map(|t| t.dims()[dim] * inner).collect();
        let mut shape = first.dims().to_vec();
        shape[dim] = tensors.iter().map(|t| t.dims()[dim]).sum();
        match first.storage() {
            Storage::Cpu(_) => {
                let xs = tensors.iter().map(|t| host(OP, t)).collect::<Result<Vec<&CpuStorage>>>()?;
                Tensor::from_cpu_storage(layout::concat(&xs, outer, &blocks), &shape)
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => cuda::layout::concat(tensors, outer, &blocks, &shape),
        }
    }

    /// Reorders the dimensions, copying: output dimension `i` is input dimension `dims[i]`
    /// (as `torch.permute`). Loaders use `permute(&[0, 2, 3, 1])` to turn OIHW conv weights
    /// into the OHWI layout [`Tensor::conv2d`] takes.
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Layout);
        const OP: &str = "permute";
        let mut seen = vec![false; self.rank()];
        let is_perm = dims.len() == self.rank()
            && dims.iter().all(|&d| d < seen.len() && !std::mem::replace(&mut seen[d], true));
        if !is_perm {
            return Err(Error::shape(
                OP,
                format!("{dims:?} is not a permutation of the dimensions of {:?}", self.dims()),
            ));
        }
        let shape: Vec<usize> = dims.iter().map(|&d| self.dims()[d]).collect();
        match self.storage() {
            Storage::Cpu(x) => Tensor::from_cpu_storage(layout::permute(x, self.dims(), dims), &shape),
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::layout::permute(x, self.dims(), dims, &shape),
        }
    }

    /// The `len` entries starting at `start` along `dim`, copied.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let _span = profile::span(OpFamily::Layout);
        const OP: &str = "narrow";
        check_dim(OP, self, dim)?;
        let size = self.dims()[dim];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::shape(
                OP,
                format!("{start}..{start}+{len} out of range for dimension {dim} of {:?}", self.dims()),
            ));
        }
        let outer = self.dims()[..dim].iter().product();
        let inner = self.dims()[dim + 1..].iter().product();
        let mut shape = self.dims().to_vec();
        shape[dim] = len;
        match self.storage() {
            Storage::Cpu(x) => {
                Tensor::from_cpu_storage(layout::narrow(x, (outer, size, inner), start, len), &shape)
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(x) => cuda::layout::narrow(x, (outer, size, inner), start, len, &shape),
        }
    }

    /// Splits along `dim` into `chunks` pieces, as `torch.chunk`: pieces of `ceil(size / chunks)`
    /// entries, the last one shorter when the size does not divide (and fewer pieces than
    /// asked when it is small). `x.chunk(2, last)` gives the halves of an attention or GEGLU
    /// projection.
    pub fn chunk(&self, chunks: usize, dim: usize) -> Result<Vec<Tensor>> {
        const OP: &str = "chunk";
        check_dim(OP, self, dim)?;
        if chunks == 0 {
            return Err(Error::shape(OP, format!("cannot split {:?} into 0 chunks", self.dims())));
        }
        let size = self.dims()[dim];
        let step = size.div_ceil(chunks).max(1);
        (0..size.max(1)).step_by(step).map(|start| self.narrow(dim, start, step.min(size - start))).collect()
    }
}
