//! A [`Request`] against a model family: defaults that depend on the family (size), the rules
//! that do (supported sizes, SDXL-only fields and presets, inpainting models' image and mask),
//! the style preset, the clip-skip convention and its depth, and random seeds, giving the
//! [`Job`] the engine renders. Errors are listed in the schema's field order.

use rand::Rng;

use super::control::ControlRequest;
use super::error::{Loc, RequestError, not_implemented, value_error};
use super::ip::IpRequest;
use super::sizes::{default_side, family_label, size_list, supported_sizes};
use super::{DEFAULT_CFG_SCALE, DEFAULT_SAMPLER, DEFAULT_STEPS, EngineName, ImageEncoding, Request};
use crate::generate::Job;
use crate::models::{ModelFacts, diffusers_clip_skip};
use kiln_runtime::checkpoint::Family;

/// A request ready to render: the job (its `init` still `None`: the runner decodes the images)
/// and what the runner needs besides.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The generation parameters, seeds drawn, style applied, sizes filled in.
    pub job: Job,
    /// How to encode the response images.
    pub image_encoding: ImageEncoding,
    /// img2img / inpainting start image, base64, to decode at the job's size.
    pub init_image: Option<String>,
    /// Inpainting mask, base64, to decode at the job's size (white is repainted).
    pub mask_image: Option<String>,
    /// img2img strength, in (0, 1].
    pub strength: f64,
    /// Fill the masked area before img2img.
    pub outpainting: bool,
    /// Whether the SDXL refiner stage runs, which depends on whether the runner has a refiner.
    pub refiner: RefinerUse,
    /// `inpaint_full_res`: the padding around the mask, in pixels; `None`: the whole image.
    pub full_res: Option<u32>,
    /// The ControlNet fields of a ControlNet request (the image decoded by the runner).
    pub control: Option<ControlRequest>,
    /// The IP-Adapter fields of an IP-Adapter request (the images decoded by the runner).
    pub ip: Option<IpRequest>,
}

/// What a request asks of the SDXL refiner (OctoAI's `use_refiner`, default true, and
/// `high_noise_frac`); the runner knows whether a refiner is configured.
#[derive(Clone, Debug, PartialEq)]
pub enum RefinerUse {
    /// No refiner stage: `use_refiner: false`, or a model without one (SD 1.5) and the field
    /// left out.
    Off,
    /// `use_refiner: true` sent: without a refiner the request is an error on the field.
    Requested {
        /// The fraction of the schedule the base runs.
        high_noise_frac: f64,
    },
    /// `use_refiner` left out on an SDXL model: the refiner runs when one is configured, and the
    /// base alone (with a warning) when none is.
    Default {
        /// The fraction of the schedule the base runs.
        high_noise_frac: f64,
    },
}

impl Request {
    /// Resolves the request for the model `model` describes (a [`Family`] stands for its
    /// published model), drawing random seeds (in `1..2^32`) from the thread's random generator
    /// for images without one.
    ///
    /// [`Family`]: kiln_runtime::checkpoint::Family
    pub fn resolve(&self, model: impl Into<ModelFacts>) -> Result<Resolved, RequestError> {
        self.resolve_with_rng(model, &mut rand::rng())
    }

    /// As [`Request::resolve`], drawing the missing seeds from `rng`.
    pub fn resolve_with_rng(
        &self,
        model: impl Into<ModelFacts>,
        rng: &mut impl Rng,
    ) -> Result<Resolved, RequestError> {
        let model = model.into();
        let family = model.family;
        let mut errors = RequestError::default();
        if let Some(engine) = self.engine.filter(|e| !e.fits(family)) {
            errors.push(value_error(
                &[Loc::from("engine")],
                format!(
                    "the request is for the '{}' engine, but the model is {family} (engine '{}')",
                    engine.as_str(),
                    EngineName::of(family).as_str()
                ),
            ));
        }
        if let Some(clip_skip) = self.clip_skip.filter(|&c| !model.has_layer_for(diffusers_clip_skip(c))) {
            errors.push(value_error(
                &[Loc::from("clip_skip")],
                format!(
                    "clip_skip {clip_skip} is deeper than this model's text encoders ({} layers): it \
                     takes at most {}",
                    model.text_layers,
                    model.max_clip_skip()
                ),
            ));
        }
        let side = default_side(family);
        let width = self.width.unwrap_or(side as i64);
        let height = self.height.unwrap_or(side as i64);
        let size = usize::try_from(width).ok().zip(usize::try_from(height).ok());
        let supported = size.filter(|s| supported_sizes(family).contains(s));
        let size_error = |field: &str| {
            value_error(
                &[Loc::from(field)],
                format!(
                    "(width, height) = ({width}, {height}) is not a size {} models support; supported \
                     (width, height): {}",
                    family_label(family),
                    size_list(family)
                ),
            )
        };
        if supported.is_none() && self.height.is_some() {
            errors.push(size_error("height"));
        }
        if family.is_inpainting() && self.init_image.is_none() {
            errors.push(value_error(
                &[Loc::from("init_image")],
                "this checkpoint is an inpainting model: it needs init_image and mask_image",
            ));
        }
        if self.mask_image.is_some() && self.init_image.is_none() {
            errors.push(value_error(
                &[Loc::from("mask_image")],
                "mask_image needs init_image (the image to inpaint)",
            ));
        }
        let one_encoder = |field: &str| {
            value_error(
                &[Loc::from(field)],
                format!("{field} is for SDXL's second text encoder; SD 1.5 models have one"),
            )
        };
        if family.is_inpainting() && self.init_image.is_some() && self.mask_image.is_none() {
            errors.push(value_error(
                &[Loc::from("mask_image")],
                "this checkpoint is an inpainting model: it needs a mask_image (white is repainted)",
            ));
        }
        if self.negative_prompt_2.is_some() && !family.is_sdxl() {
            errors.push(one_encoder("negative_prompt_2"));
        }
        if self.outpainting && (self.init_image.is_none() || self.mask_image.is_none()) {
            errors.push(value_error(
                &[Loc::from("outpainting")],
                "outpainting needs init_image and mask_image (the area to fill)",
            ));
        }
        if self.prompt_2.is_some() && !family.is_sdxl() {
            errors.push(one_encoder("prompt_2"));
        }
        if self.style_preset.is_some() && !family.is_sdxl() {
            errors.push(value_error(
                &[Loc::from("style_preset")],
                "style presets are only supported by SDXL models (as in OctoAI's API)",
            ));
        }
        let prompts = [
            ("prompt", Some(&self.prompt)),
            ("prompt_2", self.prompt_2.as_ref()),
            ("negative_prompt", self.negative_prompt.as_ref()),
            ("negative_prompt_2", self.negative_prompt_2.as_ref()),
        ];
        for (field, text) in prompts {
            if let Some(Err(e)) = text.map(|t| crate::prompt::parse_attention(t)) {
                errors.push(value_error(&[Loc::from(field)], format!("prompt weighting: {e}")));
            }
        }
        // pydantic takes `1e400` as an infinite float; an infinite weight would turn the merged
        // weights into infinities, so kiln refuses it here.
        for (name, weight) in self.loras.iter().filter(|(_, w)| !w.is_finite()) {
            errors.push(value_error(
                &[Loc::from("loras"), Loc::from(name.as_str())],
                format!("the LoRA weight {weight} is not a finite number"),
            ));
        }
        let refiner = self.refiner_use(family, &mut errors);
        let full_res = self.full_res(&mut errors);
        if let Some(scale) = self.control.as_ref().map(|c| c.scale).filter(|s| !s.is_finite()) {
            errors.push(value_error(
                &[Loc::from("controlnet_conditioning_scale")],
                format!("the ControlNet scale {scale} is not a finite number"),
            ));
        }
        if self.control.is_some() && self.mask_image.is_some() {
            errors.push(not_implemented("controlnet_image", "ControlNet with inpainting (mask_image)"));
        }
        if self.ip.is_some() && self.mask_image.is_some() {
            errors.push(not_implemented("ip_adapter_image", "IP-Adapter with inpainting (mask_image)"));
        }
        let defaults = model.defaults;
        let steps = self.steps.or(defaults.steps).unwrap_or(DEFAULT_STEPS);
        if self.init_image.is_some() && (steps as f64 * self.strength).floor() < 1.0 {
            errors.push(value_error(
                &[Loc::from("strength")],
                format!(
                    "strength {} with {} steps runs no denoising step (needs steps * strength >= 1)",
                    self.strength, steps
                ),
            ));
        }
        if supported.is_none() && (self.width.is_some() || errors.is_empty()) {
            errors.push(size_error("width"));
        }
        let Some((width, height)) = supported else { return Err(errors) };
        if !errors.is_empty() {
            return Err(errors);
        }

        let style = |prompt: &str| self.style_preset.map_or(prompt.to_string(), |s| s.apply(prompt));
        let negative = |user: Option<&str>| match self.style_preset {
            Some(s) => s.negative_with(user),
            None => user.map(str::to_string),
        };
        let job = Job {
            prompt: style(&self.prompt),
            prompt_2: self.prompt_2.as_deref().map(style),
            negative_prompt: negative(self.negative_prompt.as_deref()),
            negative_prompt_2: self.negative_prompt_2.as_deref().and_then(|n| negative(Some(n))),
            clip_skip: self.clip_skip.and_then(diffusers_clip_skip),
            cfg_scale: self.cfg_scale.or(defaults.cfg_scale).unwrap_or(DEFAULT_CFG_SCALE) as f32,
            steps,
            sampler: self.sampler.or(defaults.sampler).unwrap_or(DEFAULT_SAMPLER),
            seeds: self.seeds.iter().map(|s| s.unwrap_or_else(|| rng.random_range(1..=u32::MAX))).collect(),
            width,
            height,
            init: None,
            refiner_at: None,
            control: None,
            ip: None,
        };
        Ok(Resolved {
            job,
            image_encoding: self.image_encoding,
            init_image: self.init_image.clone(),
            mask_image: self.mask_image.clone(),
            strength: self.strength,
            outpainting: self.outpainting,
            refiner,
            full_res,
            control: self.control.clone(),
            ip: self.ip.clone(),
        })
    }

    /// `inpaint_full_res`'s padding when it is asked for: it needs a mask, and a margin that is
    /// not negative.
    fn full_res(&self, errors: &mut RequestError) -> Option<u32> {
        if !self.inpaint_full_res {
            return None;
        }
        if self.mask_image.is_none() {
            errors.push(value_error(
                &[Loc::from("inpaint_full_res")],
                "inpaint_full_res crops around the mask: it needs init_image and mask_image",
            ));
            return None;
        }
        match u32::try_from(self.inpaint_full_res_padding) {
            Ok(padding) => Some(padding),
            Err(_) => {
                errors.push(value_error(
                    &[Loc::from("inpaint_full_res_padding")],
                    format!(
                        "the margin around the mask must be 0 to {} pixels, got {}",
                        u32::MAX,
                        self.inpaint_full_res_padding
                    ),
                ));
                None
            }
        }
    }

    /// The refiner stage the request asks for on a model of `family`; an explicit
    /// `use_refiner: true` the model cannot honour is an error on the field.
    fn refiner_use(&self, family: Family, errors: &mut RequestError) -> RefinerUse {
        let high_noise_frac = self.high_noise_frac;
        let refinable = family.takes_refiner();
        match self.use_refiner {
            Some(false) => RefinerUse::Off,
            None if !refinable => RefinerUse::Off,
            Some(true) if !refinable => {
                let why = if family == Family::SdxlRefiner {
                    "this checkpoint is the SDXL refiner itself".to_string()
                } else {
                    format!("the refiner is SDXL's; {family} models have none")
                };
                errors.push(value_error(&[Loc::from("use_refiner")], why));
                RefinerUse::Off
            }
            Some(true) => RefinerUse::Requested { high_noise_frac },
            None => RefinerUse::Default { high_noise_frac },
        }
    }
}
