//! Seeded noise equal bit for bit to torch's CPU generator, so a kiln image and a diffusers image
//! made with the same seed start from the same latents.
//!
//! [`TorchGenerator::new`]`(seed)` behaves like `torch.Generator("cpu").manual_seed(seed)`, and
//! [`TorchGenerator::randn_nchw`] like `torch.randn(shape, generator=g, dtype=torch.float32)`;
//! consecutive calls continue the stream exactly as torch's do (ancestral samplers draw many
//! times). How torch samples (and so how this module does):
//!
//! - tensors of 16 or more elements: one uniform per element from the low 24 bits of an MT19937
//!   word, then Box-Muller on each chunk of 16 (first 8 give the radius, last 8 the angle); when
//!   the count is not a multiple of 16 the last 16 elements are drawn again and transformed;
//! - smaller tensors: one double-precision Box-Muller normal per element from two 53-bit
//!   uniforms, the second (sine) value cached in the generator for the next small draw.
//!
//! CPU dependence: torch's 16-value kernel is compiled per CPU. On x86-64 with AVX2 (also AVX-512
//! machines: torch registers no AVX-512 normal kernel) it uses `avx_mathfun.h`'s Cephes
//! polynomials with fused multiply-adds; that is the default kernel here
//! ([`BoxMullerKernel::X86Avx2`]), in portable scalar code, so kiln gives the same values on any
//! host. torch's portable build (`ATEN_CPU_CAPABILITY=default`, x86 without AVX2) uses libm's
//! `logf`/`cosf`/`sinf` and differs in the last bits of ~40% of the values;
//! [`BoxMullerKernel::Portable`] reproduces it where Rust's f32 functions call the same libm
//! (Linux/glibc). ARM builds of torch are not checked. The small-tensor double path
//! is the same on every build (Rust's `ln_1p`/`sin`/`cos` call the platform libm, as torch does).

mod mt19937;
mod normal;
pub mod seed_sequence;

use kiln_runtime::{DType, Device, Result, Tensor};

use crate::samplers::NoiseSource;

use mt19937::Mt19937;
use normal::{normal_f64, uniform_f32};

pub use normal::BoxMullerKernel;

/// torch's Box-Muller chunk: 8 radius uniforms and 8 angle uniforms.
const CHUNK: usize = 16;

/// A CPU random generator with torch's stream: MT19937 plus the cached double normal.
#[derive(Clone)]
pub struct TorchGenerator {
    engine: Mt19937,
    cached_normal: Option<f64>,
    kernel: BoxMullerKernel,
}

impl TorchGenerator {
    /// Like `torch.Generator("cpu").manual_seed(seed)` (only the low 32 bits matter to torch too).
    /// Values match torch on x86-64 AVX2/AVX-512 CPUs (see the module note).
    pub fn new(seed: u64) -> TorchGenerator {
        TorchGenerator::with_kernel(seed, BoxMullerKernel::default())
    }

    /// A generator reproducing the given torch build's Box-Muller kernel.
    pub fn with_kernel(seed: u64, kernel: BoxMullerKernel) -> TorchGenerator {
        TorchGenerator { engine: Mt19937::new(seed), cached_normal: None, kernel }
    }

    /// Standard-normal f32 values of `shape`, flat in torch's (row-major NCHW) order.
    pub fn randn_nchw(&mut self, shape: &[usize]) -> Vec<f32> {
        let numel: usize = shape.iter().product();
        if numel < CHUNK {
            // torch applies `value * std + mean` in f64 (+0.0 turns -0.0 into +0.0), then casts.
            return (0..numel)
                .map(|_| (normal_f64(&mut self.engine, &mut self.cached_normal) + 0.0) as f32)
                .collect();
        }
        let mut data: Vec<f32> = (0..numel).map(|_| uniform_f32(self.engine.next_u32())).collect();
        for chunk in data.chunks_exact_mut(CHUNK) {
            self.kernel.apply(chunk);
        }
        if numel % CHUNK != 0 {
            let tail = &mut data[numel - CHUNK..];
            for value in tail.iter_mut() {
                *value = uniform_f32(self.engine.next_u32());
            }
            self.kernel.apply(tail);
        }
        data
    }

    /// The values of [`Self::randn_nchw`] for `[B, C, H, W]`, laid out `[B, H, W, C]` (kiln's
    /// latents): element (b, c, h, w) of torch's tensor lands at (b, h, w, c).
    pub fn randn_nhwc(&mut self, shape_nchw: [usize; 4]) -> Vec<f32> {
        let nchw = self.randn_nchw(&shape_nchw);
        nchw_to_nhwc(&nchw, shape_nchw)
    }

    /// Noise for torch shape `[B, C, H, W]` as a kiln tensor of dims `[B, H, W, C]`, converted
    /// to `dtype` on `device` (the f32 values are torch's; the conversion rounds like torch's
    /// `.to(dtype)`).
    pub fn randn_tensor(&mut self, shape_nchw: [usize; 4], dtype: DType, device: Device) -> Result<Tensor> {
        let [batch, channels, height, width] = shape_nchw;
        let values = self.randn_nhwc(shape_nchw);
        Tensor::from_f32(values, &[batch, height, width, channels], dtype, device)
    }

    /// Uniform f32 values in [0, 1) of `shape` in torch's order, like `torch.rand(shape,
    /// generator=g)`: one MT19937 word per element, its low 24 bits scaled by 2^-24.
    pub fn rand_nchw(&mut self, shape: &[usize]) -> Vec<f32> {
        let numel: usize = shape.iter().product();
        (0..numel).map(|_| uniform_f32(self.engine.next_u32())).collect()
    }

    /// One int64 in `[low, high)`, like `torch.randint(low, high, [], generator=g)`: torch takes
    /// a 64-bit draw (two words, the first high) when the range reaches 2^32, else one word, and
    /// reduces it modulo the range. `None` when `high <= low` (torch refuses).
    pub fn randint(&mut self, low: i64, high: i64) -> Option<i64> {
        if high <= low {
            return None;
        }
        let range = high.wrapping_sub(low) as u64;
        let draw = if range >= 1 << 32 { self.engine.next_u64() } else { u64::from(self.engine.next_u32()) };
        Some((draw % range).wrapping_add(low as u64) as i64)
    }
}

/// Values of torch shape `[B, C, H, W]` (flat, row-major) laid out `[B, H, W, C]`: element
/// (b, c, h, w) lands at (b, h, w, c).
pub fn nchw_to_nhwc(nchw: &[f32], [batch, channels, height, width]: [usize; 4]) -> Vec<f32> {
    let mut nhwc = vec![0.0; nchw.len()];
    for b in 0..batch {
        for c in 0..channels {
            for h in 0..height {
                for w in 0..width {
                    let from = ((b * channels + c) * height + h) * width + w;
                    let to = ((b * height + h) * width + w) * channels + c;
                    nhwc[to] = nchw[from];
                }
            }
        }
    }
    nhwc
}

/// Samplers draw their per-step noise in torch's order: an NHWC request `[B, H, W, C]` takes
/// the values torch would give `[B, C, H, W]`, so ancestral steps match diffusers' too.
impl NoiseSource for TorchGenerator {
    fn normal(&mut self, dims: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        match *dims {
            [batch, height, width, channels] => {
                self.randn_tensor([batch, channels, height, width], dtype, device)
            }
            _ => Tensor::from_f32(self.randn_nchw(dims), dims, dtype, device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sampler's NHWC request takes the same values as an explicit NCHW draw laid out NHWC.
    #[test]
    fn noise_source_draws_in_torch_order() {
        let got = TorchGenerator::new(7).normal(&[1, 2, 3, 4], DType::F32, Device::Cpu).unwrap();
        assert_eq!(got.dims(), &[1, 2, 3, 4]);
        let want = TorchGenerator::new(7).randn_nhwc([1, 4, 2, 3]);
        assert_eq!(got.to_vec_f32().unwrap(), want);
    }
}
