//! The autoencoder of SD 1.5 and SDXL (diffusers' `AutoencoderKL`): images to latents and back,
//! sized by the checkpoint's [`VaeConfig`].
//!
//! - [`Vae::encode`]: image `[N, H, W, 3]` in [-1, 1] -> [`LatentDistribution`] over
//!   `[N, H/8, W/8, 4]` latents; [`Vae::encode_latents`] samples and scales them for the UNet;
//! - [`Vae::decode`]: latents -> image, whole or in tiles ([`Tiling`]); [`Vae::decode_latents`]
//!   undoes the scaling first; [`to_rgb8`] makes 8-bit pixels.
//!
//! Precision: see [`compute_dtype`]. The SDXL VAE overflows f16 (diffusers marks such VAEs
//! `force_upcast` and runs them in f32), so an f16 request on a `force_upcast` VAE computes in
//! f32 on the CPU and in bf16 on CUDA (f32's exponent range; CUDA stores half types only).

mod attention;
mod decoder;
mod encoder;
mod image;
mod mid;
mod resnet;
mod tiling;

use kiln_runtime::checkpoint::{Checkpoint, Component, VaeConfig};
use kiln_runtime::{DType, Device, Tensor};

pub use decoder::Decoder;
pub use encoder::Encoder;
pub use image::{Rgb8Image, to_rgb8};
pub use tiling::Tiling;

use super::nn::Conv2d;
use super::{ModelError, Result, Weights};

/// Epsilon of every group norm in the VAE (diffusers builds them all with `1e-6`).
const NORM_EPS: f32 = 1e-6;

const MODEL: &str = "vae";

/// The dtype a VAE computes in when `requested` on `device`: f16 on a `force_upcast` VAE
/// becomes f32 on the CPU and bf16 on CUDA, never a dtype that overflows to NaN; any other
/// request is honoured.
pub fn compute_dtype(config: &VaeConfig, requested: DType, device: Device) -> DType {
    match requested {
        DType::F16 if config.force_upcast => {
            if device.is_cpu() {
                DType::F32
            } else {
                DType::BF16
            }
        }
        other => other,
    }
}

/// The encoder's output: a diagonal Gaussian per latent (diffusers'
/// `DiagonalGaussianDistribution`), tensors `[N, h, w, latent]`.
#[derive(Clone, Debug)]
pub struct LatentDistribution {
    mean: Tensor,
    logvar: Tensor,
}

impl LatentDistribution {
    /// The most likely latents (img2img pipelines with `sample_mode="argmax"`).
    pub fn mean(&self) -> &Tensor {
        &self.mean
    }

    /// The log-variance, clamped to [-30, 20] as diffusers does.
    pub fn logvar(&self) -> &Tensor {
        &self.logvar
    }

    /// `mean + exp(logvar / 2) * noise`, with the caller's standard-normal `noise` (same shape;
    /// any dtype or device, converted), so the caller controls the random stream.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        if noise.dims() != self.mean.dims() {
            return Err(ModelError::input(
                MODEL,
                format!("noise has shape {:?}, the latents {:?}", noise.dims(), self.mean.dims()),
            ));
        }
        let noise = noise.to_dtype(self.mean.dtype())?.to_device(self.mean.device())?;
        let std = exp(&self.logvar.affine(0.5, 0.0)?)?;
        Ok(self.mean.add(&std.mul(&noise)?)?)
    }
}

/// Element-wise `exp` (computed on the host: the encoder's output is small).
fn exp(x: &Tensor) -> Result<Tensor> {
    let values = x.to_vec_f32()?.into_iter().map(f32::exp).collect();
    Ok(Tensor::from_f32(values, x.dims(), x.dtype(), x.device())?)
}

/// Clamps to `[lo, hi]` element-wise (on the host, as [`exp`]).
fn clamp(x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
    let values = x.to_vec_f32()?.into_iter().map(|v| v.clamp(lo, hi)).collect();
    Ok(Tensor::from_f32(values, x.dims(), x.dtype(), x.device())?)
}

/// A loaded `AutoencoderKL`: encoder and decoder with their 1×1 quantisation convs.
#[derive(Clone, Debug)]
pub struct Vae {
    config: VaeConfig,
    dtype: DType,
    device: Device,
    encoder: Encoder,
    quant_conv: Option<Conv2d>,
    decoder: Decoder,
    post_quant_conv: Option<Conv2d>,
    tiling: Option<Tiling>,
}

impl Vae {
    /// Loads the VAE of `ckpt` to compute in [`compute_dtype`]`(config, dtype, device)` on
    /// `device`. Weights whose shapes do not fit the configuration are
    /// [`ModelError::WeightShape`] naming the tensor.
    pub fn load(ckpt: &Checkpoint, dtype: DType, device: Device) -> Result<Vae> {
        ckpt.require(&[Component::Vae])?;
        let config = ckpt
            .vae_config()
            .ok_or_else(|| ModelError::input(MODEL, format!("{} has no VAE", ckpt.path().display())))?
            .clone();
        if config.block_out_channels.is_empty() || config.norm_num_groups == 0 {
            return Err(ModelError::input(
                MODEL,
                format!("configuration without levels or groups: {config:?}"),
            ));
        }
        let dtype = compute_dtype(&config, dtype, device);
        let w = Weights::new(ckpt, Component::Vae, dtype, device);
        let moments = 2 * config.latent_channels;
        let latent = config.latent_channels;
        Ok(Vae {
            encoder: Encoder::load(&w.at("encoder"), &config)?,
            quant_conv: if config.use_quant_conv {
                Some(Conv2d::load(&w.at("quant_conv"), moments, moments, 1, Default::default())?)
            } else {
                None
            },
            decoder: Decoder::load(&w.at("decoder"), &config)?,
            post_quant_conv: if config.use_post_quant_conv {
                Some(Conv2d::load(&w.at("post_quant_conv"), latent, latent, 1, Default::default())?)
            } else {
                None
            },
            tiling: None,
            config,
            dtype,
            device,
        })
    }

    /// The sizes it was built with.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The dtype it computes in (after the upcast policy).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Decodes latents larger than a tile in tiles from now on (`None`: whole, the default);
    /// [`Tiling::for_config`] gives diffusers' `enable_tiling()` sizes.
    pub fn set_tiling(&mut self, tiling: Option<Tiling>) {
        self.tiling = tiling;
    }

    /// The tiling in use, if any.
    pub fn tiling(&self) -> Option<Tiling> {
        self.tiling
    }

    /// Image pixels per latent along each side (8 for four levels).
    pub fn downscale(&self) -> usize {
        1 << (self.config.levels() - 1)
    }

    /// `x` in the compute dtype on the VAE's device, after checking it is `[N, H, W, channels]`
    /// with `H` and `W` multiples of `multiple`.
    fn prepare(&self, x: &Tensor, what: &str, channels: usize, multiple: usize) -> Result<Tensor> {
        let fits = match x.dims() {
            &[n, h, w, c] => {
                n > 0 && h > 0 && w > 0 && c == channels && h % multiple == 0 && w % multiple == 0
            }
            _ => false,
        };
        if !fits {
            return Err(ModelError::input(
                MODEL,
                format!(
                    "{what} must be [N, H, W, {channels}] with H and W positive multiples of {multiple}, got {:?}",
                    x.dims()
                ),
            ));
        }
        Ok(x.to_dtype(self.dtype)?.to_device(self.device)?)
    }

    /// `image [N, H, W, 3]` in [-1, 1] (H, W multiples of 8) -> the latent distribution over
    /// `[N, H/8, W/8, latent]`.
    pub fn encode(&self, image: &Tensor) -> Result<LatentDistribution> {
        let x = self.prepare(image, "image", self.config.in_channels, self.downscale())?;
        let mut moments = self.encoder.forward(&x)?; // [N, h, w, 2*latent]
        if let Some(conv) = &self.quant_conv {
            moments = conv.forward(&moments)?;
        }
        let halves = moments.chunk(2, 3)?;
        let [mean, logvar] = <[Tensor; 2]>::try_from(halves)
            .map_err(|_| ModelError::input(MODEL, "encoder moments do not split in two"))?;
        Ok(LatentDistribution { mean, logvar: clamp(&logvar, -30.0, 20.0)? })
    }

    /// The UNet's latents for `image`: a sample with `noise` (or the mean without), shifted by
    /// the configured shift factor and times the scaling factor.
    pub fn encode_latents(&self, image: &Tensor, noise: Option<&Tensor>) -> Result<Tensor> {
        let dist = self.encode(image)?;
        let z = match noise {
            Some(noise) => dist.sample(noise)?,
            None => dist.mean.clone(),
        };
        let scale = self.config.scaling_factor as f32;
        let shift = self.config.shift_factor.unwrap_or(0.0) as f32;
        Ok(z.affine(scale, -shift * scale)?)
    }

    /// `latents [N, h, w, latent]` (unscaled) -> image `[N, 8h, 8w, 3]` in about [-1, 1], in
    /// tiles when tiling is set and the latents are larger than one tile.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let z = self.prepare(latents, "latents", self.config.latent_channels, 1)?;
        let [_, h, w, _] = z.dims_n::<4>("vae decode")?;
        match self.tiling {
            Some(tiling) if tiling.applies_to(h, w) => tiling.decode(&z, |tile| self.decode_whole(tile)),
            _ => self.decode_whole(&z),
        }
    }

    /// Decodes the UNet's (scaled) latents: divides by the scaling factor, adds the shift, then
    /// [`Vae::decode`].
    pub fn decode_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let z = self.prepare(latents, "latents", self.config.latent_channels, 1)?;
        let shift = self.config.shift_factor.unwrap_or(0.0) as f32;
        self.decode(&z.affine(1.0 / self.config.scaling_factor as f32, shift)?)
    }

    fn decode_whole(&self, z: &Tensor) -> Result<Tensor> {
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(z)?,
            None => z.clone(),
        };
        self.decoder.forward(&z)
    }
}
