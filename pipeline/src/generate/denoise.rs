//! One UNet batch from noise (or an init image) to RGB images: diffusers' denoising loop for
//! text-to-image, img2img and both kinds of inpainting, with classifier-free guidance.

use std::sync::atomic::{AtomicBool, Ordering};

use ::image::RgbImage;
use kiln_runtime::Tensor;
use kiln_runtime::checkpoint::Family;

use super::control::ControlRows;
use super::noise::BatchNoise;
use super::pixels::{image_tensor, latent_mask, masked_image_tensor};
use super::{Engine, GenerateError, InitImage, Job, Result, finite};
use crate::models::conditioning::Conditioning;
use crate::models::unet::{AddedConditioning, Extras, IpCall};
use crate::models::vae::to_rgb8;
use crate::samplers::{self, Sampler, handover};

/// One image of a render call: its job, its index in the job, its seed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub job: usize,
    pub image: usize,
    pub seed: u32,
}

/// The images denoised together (one key, one context length).
pub(super) struct Batch<'a> {
    pub engine: &'a Engine,
    pub jobs: &'a [Job],
    pub conditionings: &'a [Conditioning],
    pub slots: &'a [Slot],
    /// Checked before each UNet call: set, the loop ends with [`GenerateError::Stopped`].
    pub stop: &'a AtomicBool,
    /// The refiner stage of jobs with [`Job::refiner_at`]: the refiner and the jobs'
    /// conditionings under its text encoder.
    pub refiner: Option<(&'a Engine, &'a [Conditioning])>,
}

/// The UNet's per-row inputs that stay fixed over the loop.
struct Rows {
    /// Rows of the guidance (unconditional) half: indices into the batch's slots.
    guided: Vec<usize>,
    /// `[rows, L, C]`: the prompts' embeddings, then the negatives' of the guided rows.
    context: Tensor,
    /// SDXL's pooled embeddings and time ids, in the same row order.
    added: Option<AddedConditioning>,
}

/// Inpainting's fixed tensors.
struct Inpaint {
    /// `[n, h, w, 1]`: 1 where the image is repainted.
    mask: Tensor,
    /// `[n, h, w, latent]`: the masked image's latents (9-channel UNets' extra input).
    masked_latents: Tensor,
    /// The init image's latents and the noise they are re-noised with each step (regular UNets
    /// keep the unmasked region on the init image's trajectory).
    blend: Option<(Tensor, Tensor)>,
}

impl Batch<'_> {
    fn job(&self, slot: &Slot) -> &Job {
        &self.jobs[slot.job]
    }

    /// Runs the loop; `on_call` after each model call. Returns the slots' images in order.
    pub(super) fn run(&self, on_call: &mut dyn FnMut(usize)) -> Result<Vec<RgbImage>> {
        let e = self.engine;
        let first = self.job(&self.slots[0]);
        let dtype = e.unet.dtype();
        let device = e.unet_device();
        let factor = e.vae.downscale();
        let shape = [e.latent_channels(), first.height / factor, first.width / factor];
        let init = first.init.as_ref();
        let mut sampler =
            samplers::build(first.sampler, &e.scheduler, first.steps, init.map(|i| i.strength))?;
        let mut noise = BatchNoise::new(self.slots.iter().map(|s| s.seed));

        // Draw order per image follows diffusers: init-image latents, noise, masked-image latents.
        let (mut latents, inpaint) = match init {
            None => {
                let x = noise.latents(shape, dtype, device)?;
                (x.affine(sampler.init_noise_sigma() as f32, 0.0)?, None)
            }
            Some(InitImage { mask: None, .. }) => {
                let image_latents = self.encode_init(&mut noise, shape)?;
                let eps = noise.latents(shape, dtype, device)?;
                (sampler.add_noise(&image_latents, &eps, 0)?, None)
            }
            Some(InitImage { mask: Some(_), strength, .. }) => {
                let from_noise = *strength == 1.0;
                let image_latents = if !e.is_inpainting() || !from_noise {
                    Some(self.encode_init(&mut noise, shape)?)
                } else {
                    None
                };
                let eps = noise.latents(shape, dtype, device)?;
                let latents = match &image_latents {
                    Some(image_latents) if !from_noise => sampler.add_noise(image_latents, &eps, 0)?,
                    _ => eps.affine(sampler.init_noise_sigma() as f32, 0.0)?,
                };
                let inpaint = self.inpaint(&mut noise, shape)?;
                let blend = (!e.is_inpainting()).then(|| image_latents.map(|l| (l, eps))).flatten();
                (latents, Some(Inpaint { blend, ..inpaint }))
            }
        };

        // The base stage, up to the hand-over when a refiner takes over.
        let rows = self.rows()?;
        // ControlNet guidance, with its end measured on the whole schedule (as diffusers does,
        // before a refiner's hand-over cuts it).
        let control = self.control_rows(&rows)?;
        let control = control.as_ref().map(|c| (c, sampler.timesteps().len()));
        let ip = self.ip_call(&rows, shape)?;
        let refiner_at = first.refiner_at.filter(|_| self.refiner.is_some());
        let calls = match refiner_at {
            Some(fraction) => {
                handover::base_calls(sampler.timesteps(), fraction, e.scheduler.num_train_timesteps)
            }
            None => sampler.timesteps().len(),
        };
        // Calls are numbered across both stages.
        let mut done = 0;
        let mut counted = |_| {
            on_call(done);
            done += 1;
        };
        latents = self.denoise(
            &mut *sampler,
            latents,
            (&rows, control, ip.as_ref()),
            inpaint.as_ref(),
            calls,
            &mut noise,
            &mut counted,
        )?;

        // The refiner stage: a fresh sampler from its own scheduler, started at the hand-over,
        // the images' generators carried on. Inpainting, as diffusers' refiner inpainting
        // pipeline given the base's latents as its image: it draws one noise tensor and blends
        // the kept region towards the base's latents re-noised with it.
        if let (Some(fraction), Some((refiner, conditionings))) = (refiner_at, self.refiner) {
            let stage = Batch { engine: refiner, conditionings, refiner: None, ..*self };
            let mut sampler = refiner.refiner_sampler(first, fraction)?;
            let rows = stage.rows()?;
            let calls = sampler.timesteps().len();
            let inpaint = match inpaint {
                Some(i) => {
                    let eps = noise.latents(shape, dtype, device)?;
                    Some(Inpaint { blend: Some((latents.clone(), eps)), ..i })
                }
                None => None,
            };
            latents = stage.denoise(
                &mut *sampler,
                latents,
                (&rows, None, None),
                inpaint.as_ref(),
                calls,
                &mut noise,
                &mut counted,
            )?;
        }

        let decoded = e.vae.decode_latents(&latents)?; // [n, H, W, 3]
        finite::check(&decoded, || "the VAE decoder".into())?;
        to_rgb8(&decoded)?
            .into_iter()
            .map(|img| {
                RgbImage::from_raw(img.width as u32, img.height as u32, img.pixels).ok_or_else(|| {
                    GenerateError::Input {
                        field: "width",
                        message: "decoded image has the wrong size".into(),
                    }
                })
            })
            .collect()
    }

    /// The denoising loop over the sampler's first `calls` model calls from `latents`, with
    /// guidance and, when given, a ControlNet (its rows and the schedule's length); `on_call`
    /// after each.
    #[allow(clippy::too_many_arguments)]
    fn denoise(
        &self,
        sampler: &mut dyn Sampler,
        mut latents: Tensor,
        (rows, control, ip): (&Rows, Option<(&ControlRows<'_>, usize)>, Option<&IpCall>),
        inpaint: Option<&Inpaint>,
        calls: usize,
        noise: &mut BatchNoise,
        on_call: &mut dyn FnMut(usize),
    ) -> Result<Tensor> {
        let e = self.engine;
        let timesteps = sampler.timesteps()[..calls].to_vec();
        for (call, &t) in timesteps.iter().enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                return Err(GenerateError::Stopped);
            }
            let x = sampler.scale_model_input(&latents, call)?; // [n, h, w, latent]
            let row_timesteps = vec![t as f32; rows.context.dims()[0]];
            let residuals = match control.and_then(|(c, n)| Some((c, c.scales(call, n)?))) {
                Some((c, scales)) => Some(c.net.forward(
                    &stack_rows(&x, &rows.guided)?,
                    &row_timesteps,
                    &rows.context,
                    rows.added.as_ref(),
                    &c.hint,
                    &scales,
                )?),
                None => None,
            };
            let x = match inpaint {
                Some(i) if e.is_inpainting() => {
                    let mask = i.mask.to_dtype(x.dtype())?;
                    let masked = i.masked_latents.to_dtype(x.dtype())?;
                    Tensor::concat(&[&x, &mask, &masked], 3)? // [n, h, w, 2 latent + 1]
                }
                _ => x,
            };
            let input = stack_rows(&x, &rows.guided)?;
            let extras = Extras { control: residuals.as_ref(), ip };
            let out =
                e.unet.forward_with(&input, &row_timesteps, &rows.context, rows.added.as_ref(), extras)?;
            let prediction = self.guide(&out, &rows.guided)?.to_dtype(latents.dtype())?;
            latents = sampler.step(&prediction, call, &latents, noise)?;
            if let Some(Inpaint { mask, blend: Some((image_latents, eps)), .. }) = inpaint {
                latents = keep_unmasked(sampler, &latents, mask, image_latents, eps, call, calls)?;
            }
            finite::check(&latents, || format!("UNet step {} of {}", call + 1, calls))?;
            on_call(call);
        }
        Ok(latents)
    }

    /// The slots' init images through the VAE encoder, each sampled with its generator,
    /// scaled to UNet latents `[n, h, w, latent]` in the UNet's dtype.
    fn encode_init(&self, noise: &mut BatchNoise, shape: [usize; 3]) -> Result<Tensor> {
        let e = self.engine;
        let images: Vec<_> = self.slots.iter().map(|s| &self.init(s).image).collect();
        let pixels = image_tensor(&images, e.vae.dtype(), e.unet_device())?;
        let eps = noise.latents(shape, e.vae.dtype(), e.unet_device())?;
        let latents = e.vae.encode_latents(&pixels, Some(&eps))?.to_dtype(e.unet.dtype())?;
        finite::check(&latents, || "the VAE encoder (init_image)".into())?;
        Ok(latents)
    }

    /// The mask at latent size and the masked image's latents (sampled with each image's
    /// generator, as diffusers does for both kinds of UNet).
    fn inpaint(&self, noise: &mut BatchNoise, shape: [usize; 3]) -> Result<Inpaint> {
        let e = self.engine;
        let (dtype, device) = (e.unet.dtype(), e.unet_device());
        let pairs: Vec<_> = self
            .slots
            .iter()
            .filter_map(|s| {
                let init = self.init(s);
                init.mask.as_ref().map(|m| (&init.image, m))
            })
            .collect();
        let masks: Vec<_> = pairs.iter().map(|(_, m)| *m).collect();
        let mask = latent_mask(&masks, e.vae.downscale(), dtype, device)?;
        let masked = masked_image_tensor(&pairs, e.vae.dtype(), device)?;
        let eps = noise.latents(shape, e.vae.dtype(), device)?;
        let masked_latents = e.vae.encode_latents(&masked, Some(&eps))?.to_dtype(dtype)?;
        finite::check(&masked_latents, || "the VAE encoder (masked init_image)".into())?;
        Ok(Inpaint { mask, masked_latents, blend: None })
    }

    fn init(&self, slot: &Slot) -> &InitImage {
        self.job(slot).init.as_ref().expect("every job of an init-image batch has an init image")
    }

    /// The ControlNet's rows when the batch's jobs have [`super::Job::control`]: each slot's
    /// control, then each guided slot's again.
    fn control_rows(&self, rows: &Rows) -> Result<Option<ControlRows<'_>>> {
        let Some(net) =
            self.engine.controlnet.as_ref().filter(|_| self.job(&self.slots[0]).control.is_some())
        else {
            return Ok(None);
        };
        let order = self.slots.iter().chain(rows.guided.iter().map(|&i| &self.slots[i]));
        let controls = order
            .map(|s| {
                self.job(s).control.as_ref().ok_or_else(|| GenerateError::Input {
                    field: "controlnet",
                    message: "a batch mixes jobs with and without a ControlNet".into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(ControlRows::new(net.clone(), controls, self.engine.unet_device())?))
    }

    /// The UNet's IP-Adapter inputs when the batch's jobs have [`super::Job::ip`]: each slot's
    /// image, then the unconditional tokens for each guided slot (with that slot's scale and mask).
    fn ip_call(&self, rows: &Rows, shape: [usize; 3]) -> Result<Option<IpCall>> {
        let first = self.job(&self.slots[0]);
        if first.ip.is_none() || self.engine.ip_adapter.is_none() {
            return Ok(None);
        }
        let ip_of = |s: &Slot| {
            self.job(s).ip.as_ref().ok_or_else(|| GenerateError::Input {
                field: "ip_adapter_image",
                message: "a batch mixes jobs with and without an IP-Adapter".into(),
            })
        };
        let mut order = Vec::with_capacity(self.slots.len() + rows.guided.len());
        for s in self.slots {
            order.push((ip_of(s)?, true));
        }
        for &i in &rows.guided {
            order.push((ip_of(&self.slots[i])?, false));
        }
        Ok(Some(self.engine.ip_call(&order, (shape[1], shape[2]), (first.height, first.width))?))
    }

    /// Context and added conditioning for the rows: each slot's prompt, then each guided
    /// slot's negative.
    fn rows(&self) -> Result<Rows> {
        let guided: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| self.job(s).cfg_scale > 1.0)
            .map(|(i, _)| i)
            .collect();
        let cond = |s: &Slot| &self.conditionings[s.job];
        let mut hidden: Vec<&Tensor> = self.slots.iter().map(|s| &cond(s).positive.hidden).collect();
        hidden.extend(guided.iter().map(|&i| &cond(&self.slots[i]).negative.hidden));
        let context = Tensor::concat(&hidden, 0)?; // [rows, L, C]

        let added = if self.engine.unet.needs_added_conditioning() {
            let mut pooled = Vec::new();
            let mut time_ids = Vec::new();
            let rows =
                self.slots.iter().map(|s| (s, true)).chain(guided.iter().map(|&i| (&self.slots[i], false)));
            for (slot, positive) in rows {
                let c = cond(slot);
                let embedding = if positive { &c.positive } else { &c.negative };
                let p = embedding.pooled.as_ref().ok_or_else(|| GenerateError::Input {
                    field: "prompt",
                    message: "the text encoder gave no pooled embedding, which this UNet needs".into(),
                })?;
                pooled.push(p);
                time_ids.extend(self.time_ids(self.job(slot), positive));
            }
            Some(AddedConditioning { text_embeds: Tensor::concat(&pooled, 0)?, time_ids })
        } else {
            None
        };
        Ok(Rows { guided, context, added })
    }

    /// SDXL's micro-conditioning: original size = target size = the output, no crop; the
    /// refiner's aesthetic score instead of the target size (diffusers' 6.0 and 2.5).
    fn time_ids(&self, job: &Job, positive: bool) -> Vec<f32> {
        let (h, w) = (job.height as f32, job.width as f32);
        if self.engine.family == Family::SdxlRefiner {
            vec![h, w, 0.0, 0.0, if positive { 6.0 } else { 2.5 }]
        } else {
            vec![h, w, 0.0, 0.0, h, w]
        }
    }

    /// The guided prediction per slot: `uncond + scale (cond - uncond)` for guided rows, the
    /// prompt's prediction for the others. `out` is `[n + guided, h, w, c]`.
    fn guide(&self, out: &Tensor, guided: &[usize]) -> Result<Tensor> {
        let n = self.slots.len();
        if guided.is_empty() {
            return Ok(out.clone());
        }
        let mut rows = Vec::with_capacity(n);
        for (i, slot) in self.slots.iter().enumerate() {
            let cond = out.narrow(0, i, 1)?;
            rows.push(match guided.iter().position(|&g| g == i) {
                Some(g) => {
                    let uncond = out.narrow(0, n + g, 1)?;
                    let scale = self.job(slot).cfg_scale;
                    uncond.add(&cond.add(&uncond.affine(-1.0, 0.0)?)?.affine(scale, 0.0)?)?
                }
                None => cond,
            });
        }
        Ok(Tensor::concat(&rows.iter().collect::<Vec<_>>(), 0)?)
    }
}

/// `x [n, ...]` followed by its guided rows: `[n + guided, ...]`.
fn stack_rows(x: &Tensor, guided: &[usize]) -> Result<Tensor> {
    if guided.is_empty() {
        return Ok(x.clone());
    }
    if guided.len() == x.dims()[0] {
        return Ok(Tensor::concat(&[x, x], 0)?);
    }
    let extra = guided.iter().map(|&i| x.narrow(0, i, 1)).collect::<kiln_runtime::Result<Vec<_>>>()?;
    let mut all = vec![x];
    all.extend(extra.iter());
    Ok(Tensor::concat(&all, 0)?)
}

/// Regular-UNet inpainting after step `call`: the kept region goes back to the init image's
/// latents noised to the next call's level (clean after the last), as diffusers blends.
fn keep_unmasked(
    sampler: &dyn Sampler,
    latents: &Tensor,
    mask: &Tensor,
    image_latents: &Tensor,
    eps: &Tensor,
    call: usize,
    calls: usize,
) -> Result<Tensor> {
    let proper = if call + 1 < calls {
        sampler.add_noise(image_latents, eps, call + 1)?
    } else {
        image_latents.clone()
    };
    let mask = mask.to_dtype(latents.dtype())?;
    let keep = mask.affine(-1.0, 1.0)?; // 1 - mask
    Ok(keep.mul(&proper)?.add(&mask.mul(latents)?)?)
}
