//! One torch-compatible generator per image, so that an image in a batch draws exactly the
//! noise it would draw alone (diffusers with a list of generators, one per sample).

use kiln_runtime::{DType, Device, Tensor};

use crate::rng::TorchGenerator;
use crate::samplers::NoiseSource;

/// The generators of a batch's images, in batch order.
pub(super) struct BatchNoise {
    generators: Vec<TorchGenerator>,
}

impl BatchNoise {
    /// `torch.Generator("cpu").manual_seed(seed)` for each seed.
    pub(super) fn new(seeds: impl IntoIterator<Item = u32>) -> BatchNoise {
        BatchNoise { generators: seeds.into_iter().map(|s| TorchGenerator::new(u64::from(s))).collect() }
    }

    /// Noise of torch shape `[B, C, H, W]` (B = the number of images), each image's
    /// `[1, C, H, W]` from its own generator, laid out NHWC `[B, H, W, C]`.
    pub(super) fn latents(
        &mut self,
        [c, h, w]: [usize; 3],
        dtype: DType,
        device: Device,
    ) -> kiln_runtime::Result<Tensor> {
        let parts = self
            .generators
            .iter_mut()
            .map(|g| g.randn_tensor([1, c, h, w], dtype, device))
            .collect::<kiln_runtime::Result<Vec<_>>>()?;
        Tensor::concat(&parts.iter().collect::<Vec<_>>(), 0)
    }
}

/// Samplers' step noise: the batch dimension is split across the images' generators.
impl NoiseSource for BatchNoise {
    fn normal(&mut self, dims: &[usize], dtype: DType, device: Device) -> kiln_runtime::Result<Tensor> {
        match *dims {
            [b, h, w, c] if b == self.generators.len() => self.latents([c, h, w], dtype, device),
            _ => Err(kiln_runtime::Error::Shape {
                op: "step noise",
                msg: format!(
                    "shape {dims:?} for a batch of {} images: expected [B, H, W, C]",
                    self.generators.len()
                ),
            }),
        }
    }
}
