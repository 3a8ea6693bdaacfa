//! One torch-compatible generator per image, so that an image in a batch draws exactly the
//! noise it would draw alone (diffusers with a list of generators, one per sample), and one
//! Brownian tree per image for `DPM_PLUS_PLUS_SDE_KARRAS`.
//!
//! The tree's entropy: diffusers' `DPMSolverSDEScheduler` (with `noise_sampler_seed` unset, as
//! OctoAI's request has no such field) takes it from `torch.randint(0, 2**63 - 1, [])` on
//! torch's global generator, which the request's seed does not reach. kiln takes that same draw
//! from a fresh generator seeded with the image's seed, i.e. what diffusers gives after
//! `torch.manual_seed(seed)` (which `tools/make_pipeline_fixtures.py` calls before each image).

use kiln_runtime::{DType, Device, Tensor};

use crate::rng::{TorchGenerator, nchw_to_nhwc};
use crate::samplers::NoiseSource;
use crate::samplers::brownian::BrownianNoise;

/// The generators (and Brownian trees, once asked for) of a batch's images, in batch order.
pub(super) struct BatchNoise {
    generators: Vec<TorchGenerator>,
    /// Per image: the tree's entropy, and the tree built at the first Brownian draw.
    entropies: Vec<u64>,
    trees: Vec<Option<BrownianNoise>>,
}

impl BatchNoise {
    /// `torch.Generator("cpu").manual_seed(seed)` for each seed.
    pub(super) fn new(seeds: impl IntoIterator<Item = u32>) -> BatchNoise {
        let seeds: Vec<u32> = seeds.into_iter().collect();
        let entropies = seeds.iter().map(|&s| brownian_entropy(s)).collect();
        BatchNoise {
            generators: seeds.iter().map(|&s| TorchGenerator::new(u64::from(s))).collect(),
            entropies,
            trees: seeds.iter().map(|_| None).collect(),
        }
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

    /// `[B, H, W, C]` from `dims`, or the error naming what does not fit.
    fn batch_dims(&self, dims: &[usize]) -> kiln_runtime::Result<[usize; 3]> {
        match *dims {
            [b, h, w, c] if b == self.generators.len() => Ok([c, h, w]),
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

/// The entropy of an image's Brownian tree: `torch.randint(0, 2**63 - 1, [])` drawn from
/// `torch.manual_seed(seed)`.
fn brownian_entropy(seed: u32) -> u64 {
    let draw = TorchGenerator::new(u64::from(seed)).randint(0, i64::MAX);
    draw.expect("a non-empty range") as u64
}

/// Samplers' step noise: the batch dimension is split across the images' generators (or trees).
impl NoiseSource for BatchNoise {
    fn normal(&mut self, dims: &[usize], dtype: DType, device: Device) -> kiln_runtime::Result<Tensor> {
        let chw = self.batch_dims(dims)?;
        self.latents(chw, dtype, device)
    }

    fn brownian(
        &mut self,
        dims: &[usize],
        [sigma_min, sigma_max]: [f32; 2],
        [sigma, sigma_next]: [f32; 2],
        dtype: DType,
        device: Device,
    ) -> kiln_runtime::Result<Tensor> {
        let [c, h, w] = self.batch_dims(dims)?;
        let shape = [1, c, h, w];
        let brownian_error = |e: crate::samplers::brownian::BrownianError| kiln_runtime::Error::Shape {
            op: "Brownian step noise",
            msg: e.to_string(),
        };
        let mut parts = Vec::with_capacity(self.trees.len());
        for (tree, &entropy) in self.trees.iter_mut().zip(&self.entropies) {
            if tree.is_none() {
                *tree =
                    Some(BrownianNoise::new(entropy, sigma_min, sigma_max, &shape).map_err(brownian_error)?);
            }
            let values =
                tree.as_mut().expect("just built").sample(sigma, sigma_next).map_err(brownian_error)?;
            let nhwc = nchw_to_nhwc(&values, shape);
            parts.push(Tensor::from_f32(nhwc, &[1, h, w, c], dtype, device)?);
        }
        Tensor::concat(&parts.iter().collect::<Vec<_>>(), 0)
    }
}
