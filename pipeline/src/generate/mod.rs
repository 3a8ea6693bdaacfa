//! Requests to images: text-to-image, img2img and inpainting with classifier-free guidance, as
//! diffusers' StableDiffusion(XL) pipelines do, with several jobs stacked into one UNet call.
//!
//! - [`Engine`]: one loaded checkpoint (text encoders, UNet, VAE, scheduler config), with the
//!   LoRAs, VAE and textual inversions a request adds ([`Engine::set_loras`],
//!   [`Engine::set_vae`], [`Engine::set_textual_inversions`]);
//! - [`Job`]: one request's generation parameters, already validated;
//! - [`BatchKey`]: jobs with equal keys can share one [`Engine::render`] call;
//! - the SDXL refiner: [`Engine::set_refiner`] attaches one, and jobs with
//!   [`Job::refiner_at`] hand their latents over to it (diffusers' ensemble of experts).

mod assets;
mod control;
mod denoise;
mod engine;
mod error;
mod finite;
mod ip;
mod noise;
mod pixels;

use ::image::{GrayImage, RgbImage};

use crate::samplers::SamplerName;

pub use engine::{Engine, Shared};
pub use ip::IpModels;

pub use error::{GenerateError, Result};

/// An img2img or inpainting start: the image to start from and how far to move away from it.
#[derive(Clone, Debug)]
pub struct InitImage {
    /// The start image, already at the job's width × height.
    pub image: RgbImage,
    /// How much of the schedule to run, in (0, 1] (1 starts from pure noise).
    pub strength: f64,
    /// Inpainting: white (≥ 128) is repainted, black kept; at the job's width × height.
    pub mask: Option<GrayImage>,
    /// Inpainting at full resolution (OctoAI's `inpaint_full_res`): the padding in pixels around
    /// the mask; the crop is inpainted at the job's size and pasted back (see
    /// [`crate::image::full_res`]). `None`: the whole image.
    pub full_res: Option<u32>,
}

/// ControlNet guidance for one job (OctoAI's `controlnet_*` fields), by the ControlNet attached
/// to the engine ([`Engine::set_controlnet`]).
#[derive(Clone, Debug)]
pub struct Control {
    /// The control image at the job's width × height, as the ControlNet takes it (a Canny edge
    /// map already made, or the image as given).
    pub image: RgbImage,
    /// How strongly its residuals count (`controlnet_conditioning_scale`).
    pub scale: f64,
    /// The share of the model calls it guides, from the first (`controlnet_early_stop`,
    /// diffusers' `control_guidance_end`): call `i` of `n` is guided while `(i + 1) / n <= end`.
    pub end: f64,
}

impl Control {
    /// This job's scale at model call `call` of `calls` (diffusers' `controlnet_keep`).
    pub fn scale_at(&self, call: usize, calls: usize) -> f64 {
        let guided = (call + 1) as f64 / calls as f64 <= self.end;
        if guided { self.scale } else { 0.0 }
    }
}

/// Which cross-attentions an IP-Adapter's scale applies to (OctoAI's `ip_adapter_method`; the
/// others get 0, as diffusers' `set_ip_adapter_scale` with InstantStyle's block dicts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpMethod {
    /// Every layer.
    Full,
    /// `up_blocks.0.attentions.1` only (InstantStyle's style block).
    Style,
    /// `down_blocks.2.attentions.1` only (InstantStyle's layout block).
    Composition,
}

impl IpMethod {
    /// The attention (`down_blocks.2.attentions.1`, ...) the method scales, `None` for all.
    pub fn block(self) -> Option<&'static str> {
        match self {
            IpMethod::Full => None,
            IpMethod::Style => Some("up_blocks.0.attentions.1"),
            IpMethod::Composition => Some("down_blocks.2.attentions.1"),
        }
    }
}

/// IP-Adapter guidance for one job (OctoAI's `ip_adapter_*` fields), by the adapter attached to
/// the engine ([`Engine::set_ip_adapter`]).
#[derive(Clone, Debug)]
pub struct IpImage {
    /// The reference image as the CLIP encoder takes it: the 224 x 224 crop of
    /// [`crate::image::clip::clip_crop`].
    pub image: RgbImage,
    /// How strongly the image guides (`ip_adapter_scale`).
    pub scale: f64,
    /// Which layers it guides.
    pub method: IpMethod,
    /// Where it guides, at the job's width x height (white: there); `None`: everywhere.
    pub mask: Option<GrayImage>,
}

/// One request's generation parameters, validated and with defaults filled in.
#[derive(Clone, Debug)]
pub struct Job {
    /// The prompt (A1111 attention syntax allowed).
    pub prompt: String,
    /// SDXL's second encoder's prompt (defaults to `prompt`).
    pub prompt_2: Option<String>,
    /// The negative prompt; `None` is diffusers' default (the empty prompt for SD 1.5, zeros
    /// for SDXL).
    pub negative_prompt: Option<String>,
    /// SDXL's second encoder's negative prompt (defaults to `negative_prompt`).
    pub negative_prompt_2: Option<String>,
    /// Text-encoder layers skipped, in diffusers' convention (`None` and `Some(0)` are the
    /// default layer); OctoAI's / A1111's `clip_skip` is this plus one.
    pub clip_skip: Option<usize>,
    /// Classifier-free guidance scale; at most 1 runs no unconditional pass (as diffusers).
    pub cfg_scale: f32,
    /// Denoising steps.
    pub steps: usize,
    /// The sampler.
    pub sampler: SamplerName,
    /// One seed per image: image `k` is what a batch of one with `seeds[k]` gives.
    pub seeds: Vec<u32>,
    /// Output width in pixels (a multiple of 8).
    pub width: usize,
    /// Output height in pixels (a multiple of 8).
    pub height: usize,
    /// img2img / inpainting input; `None` for text-to-image.
    pub init: Option<InitImage>,
    /// SDXL's refiner stage: the fraction of the schedule the base model runs before the
    /// refiner takes the still noisy latents over (OctoAI's `high_noise_frac`, diffusers'
    /// `denoising_end` / `denoising_start`); `None`: the base model alone.
    pub refiner_at: Option<f64>,
    /// ControlNet guidance; `None` renders without the ControlNet.
    pub control: Option<Control>,
    /// IP-Adapter guidance; `None` renders without the adapter.
    pub ip: Option<IpImage>,
}

/// What jobs must share to be stacked into one UNet call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchKey {
    width: usize,
    height: usize,
    sampler: SamplerName,
    steps: usize,
    /// The strength's bits for img2img and inpainting (`None` for text-to-image).
    strength: Option<u64>,
    inpaint: bool,
    /// The refiner hand-over fraction's bits (`None` without a refiner stage).
    refiner_at: Option<u64>,
    /// Whether a ControlNet guides the jobs (their control images and scales may differ).
    controlled: bool,
    /// Whether an IP-Adapter guides the jobs (their images, scales and methods may differ).
    adapted: bool,
}

impl Job {
    /// The key of the jobs this one can be rendered with.
    pub fn batch_key(&self) -> BatchKey {
        self.batch_key_with_init(self.init.as_ref().map(|i| (i.strength, i.mask.is_some())))
    }

    /// The key this job has once given an init image of `strength`, with a mask or not
    /// (`None`: text-to-image), so requests can be grouped before their images are decoded.
    pub fn batch_key_with_init(&self, init: Option<(f64, bool)>) -> BatchKey {
        BatchKey {
            width: self.width,
            height: self.height,
            sampler: self.sampler,
            steps: self.steps,
            strength: init.map(|(strength, _)| strength.to_bits()),
            inpaint: init.is_some_and(|(_, masked)| masked),
            refiner_at: self.refiner_at.map(f64::to_bits),
            controlled: self.control.is_some(),
            adapted: self.ip.is_some(),
        }
    }

    /// The number of images this job makes.
    pub fn images(&self) -> usize {
        self.seeds.len()
    }
}
