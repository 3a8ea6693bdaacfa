//! A loaded checkpoint and how a set of jobs is split into UNet batches.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ::image::RgbImage;
use kiln_runtime::checkpoint::names::UnetBlocks;
use kiln_runtime::checkpoint::{Checkpoint, Family, OpenOptions};
use kiln_runtime::{DType, Device};

use super::denoise::{Batch, Slot};
use super::{GenerateError, InitImage, Job, Result, finite};
use crate::image::full_res::FullRes;
use crate::lora::{Originals, TargetIndex};
use crate::models::conditioning::{Conditioning, PromptEmbedding, TextConditioner};
use crate::models::patch::PatchTable;
use crate::models::settings::CheckpointSettings;
use crate::models::unet::{ControlNet, UNet};
use crate::models::vae::Vae;
use crate::models::{Loans, ModelError, ModelFacts};
use crate::prompt::DroppedTokens;
use crate::samplers::{self, SchedulerConfig, handover};

/// What a refiner loaded by [`Engine::load_refiner`] holds once instead of twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shared {
    /// Text encoder 2 tensors taken from the base.
    pub text_tensors: usize,
    /// Their bytes.
    pub text_bytes: u64,
    /// The bytes of the VAE, the base's, not loaded again.
    pub vae_bytes: u64,
}

/// One loaded checkpoint: text encoders, UNet, VAE and the scheduler configuration.
#[derive(Debug)]
pub struct Engine {
    pub(super) path: PathBuf,
    /// How the checkpoint was opened (a config folder, the weight check).
    pub(super) open: OpenOptions,
    pub(super) family: Family,
    pub(super) facts: ModelFacts,
    pub(super) device: Device,
    pub(super) dtype: DType,
    pub(super) text: TextConditioner,
    pub(super) unet: UNet,
    pub(super) vae: Vae,
    pub(super) scheduler: SchedulerConfig,
    /// The UNet's and text encoders' patchable weights, and what names them in LoRA files.
    pub(super) patchable: PatchTable,
    pub(super) lora_index: TargetIndex,
    /// The LoRA set merged now (file and weight, in merge order) and the weights it replaced.
    pub(super) loras: Vec<(PathBuf, f32)>,
    pub(super) originals: Originals,
    /// The textual inversions in use: each file and its trigger word.
    pub(super) textual_inversions: Vec<(PathBuf, String)>,
    /// The VAE file in use instead of the checkpoint's own, and the own one kept meanwhile.
    pub(super) vae_path: Option<PathBuf>,
    pub(super) own_vae: Option<Vae>,
    /// The SDXL refiner that jobs with [`Job::refiner_at`] hand over to.
    pub(super) refiner: Option<Arc<Engine>>,
    /// The ControlNet that guides jobs with [`Job::control`].
    pub(super) controlnet: Option<Arc<ControlNet>>,
    /// The IP-Adapter (and its image encoder) that guides jobs with [`Job::ip`].
    pub(super) ip_adapter: Option<Arc<super::IpModels>>,
}

impl Engine {
    /// Loads the checkpoint at `path` (single file or diffusers folder) to compute in `dtype`
    /// on `device` (the VAE may upcast, see [`crate::models::vae::compute_dtype`]). The
    /// scheduler configuration is the folder's `scheduler/scheduler_config.json`, or the
    /// family's published one for a single file.
    pub fn load(path: &Path, dtype: DType, device: Device) -> Result<Engine> {
        Engine::load_with(path, &OpenOptions::default(), dtype, device)
    }

    /// [`Engine::load`] with checkpoint options: a config folder for a single file whose
    /// sizes differ from its family's published configs, a weights variant. A `NAME.json`
    /// beside the checkpoint ([`CheckpointSettings`]) overrides scheduler options and sets
    /// request defaults.
    pub fn load_with(path: &Path, options: &OpenOptions, dtype: DType, device: Device) -> Result<Engine> {
        let ckpt = Checkpoint::open_with(path, options).map_err(ModelError::from)?;
        Engine::load_parts(&ckpt, path, options, dtype, device, None, None)
    }

    /// Loads the SDXL refiner at `path` to follow this (SDXL) engine, holding once what the two
    /// share: the refiner's text encoder 2 weights where their bytes equal this checkpoint's
    /// (the published refiner ships a copy of the base's OpenCLIP-G), and the VAE, which the
    /// refiner stage never uses (the images decode with this engine's). Sharing stays safe when
    /// this engine merges a LoRA: a merge swaps new tensors in and keeps the originals, which
    /// the refiner goes on holding.
    pub fn load_refiner(&self, path: &Path, options: &OpenOptions) -> Result<(Engine, Shared)> {
        let ckpt = Checkpoint::open_with(path, options).map_err(ModelError::from)?;
        if ckpt.family() != Family::SdxlRefiner {
            return Err(GenerateError::Input {
                field: "use_refiner",
                message: format!("{} is {}, not an SDXL refiner", path.display(), ckpt.family()),
            });
        }
        let loans = self.text_encoder_2_loans(&ckpt)?;
        let vae = self.own_vae.clone().unwrap_or_else(|| self.vae.clone());
        let bytes = |t: &kiln_runtime::Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        let shared = Shared {
            text_tensors: loans.len(),
            text_bytes: loans.values().map(bytes).sum(),
            vae_bytes: ckpt
                .names()
                .filter(|n| n.starts_with("vae."))
                .filter_map(|n| ckpt.shape(n))
                .map(|shape| (shape.iter().product::<usize>() * vae.dtype().size_in_bytes()) as u64)
                .sum(),
        };
        let engine =
            Engine::load_parts(&ckpt, path, options, self.dtype, self.device, Some(&loans), Some(vae))?;
        Ok((engine, shared))
    }

    /// The refiner's text encoder 2 weights that this engine holds already: those whose stored
    /// bytes (dtype, shape, data) equal this checkpoint's, taken in their original form (a LoRA
    /// merged into this engine is not lent).
    fn text_encoder_2_loans(&self, refiner: &Checkpoint) -> Result<Loans> {
        let mut loans = Loans::new();
        if !self.family.is_sdxl() {
            return Ok(loans);
        }
        let options = self.open.clone().skip_weight_check(true);
        let own = Checkpoint::open_with(&self.path, &options).map_err(ModelError::from)?;
        for name in refiner.names().filter(|n| n.starts_with("text_encoder_2.")) {
            let Some(weight) =
                self.originals.get(name).cloned().or_else(|| self.patchable.get(name).map(|w| w.get()))
            else {
                continue;
            };
            let (theirs, ours) = (refiner.view(name).map_err(ModelError::from)?, own.view(name));
            let Ok(ours) = ours else { continue };
            let same_kind = theirs.source.dtype() == ours.source.dtype() && theirs.shape == ours.shape;
            let same_bytes =
                match (theirs.bytes().map_err(ModelError::from)?, ours.bytes().map_err(ModelError::from)?) {
                    (Some(a), Some(b)) => a == b,
                    _ => false, // a transposed copy: not compared
                };
            if same_kind && same_bytes {
                loans.insert(name.to_string(), weight);
            }
        }
        Ok(loans)
    }

    /// Loads an opened checkpoint, with tensors lent by another engine and, when given, a VAE
    /// instead of the checkpoint's own.
    fn load_parts(
        ckpt: &Checkpoint,
        path: &Path,
        options: &OpenOptions,
        dtype: DType,
        device: Device,
        loans: Option<&Loans>,
        vae: Option<Vae>,
    ) -> Result<Engine> {
        ckpt.require_complete().map_err(ModelError::from)?;
        let family = ckpt.family();
        let settings = CheckpointSettings::beside(path).map_err(ModelError::from)?;
        let facts = ModelFacts::of(ckpt).with_defaults(settings.defaults);
        let scheduler = settings.apply(SchedulerConfig::for_checkpoint(ckpt, path)?);
        let text = TextConditioner::load_with_loans(ckpt, dtype, device, loans)?;
        let unet = UNet::load(ckpt, dtype, device)?;
        let mut patchable = unet.patchable().clone();
        patchable.extend(text.patchable());
        let c = unet.config();
        let lora_index = TargetIndex::new(
            &patchable,
            UnetBlocks { levels: c.levels(), layers_per_block: c.layers_per_block },
        );
        let vae = match vae {
            Some(vae) => vae,
            None => Vae::load(ckpt, dtype, device)?,
        };
        Ok(Engine {
            path: path.to_path_buf(),
            open: options.clone(),
            family,
            facts,
            device,
            dtype,
            text,
            unet,
            vae,
            scheduler,
            patchable,
            lora_index,
            loras: Vec::new(),
            originals: Originals::default(),
            textual_inversions: Vec::new(),
            vae_path: None,
            own_vae: None,
            refiner: None,
            controlnet: None,
            ip_adapter: None,
        })
    }

    /// Attaches the SDXL refiner jobs with [`Job::refiner_at`] hand their latents over to (or
    /// detaches it). The refiner must be an SDXL refiner checkpoint and this engine an SDXL
    /// one; the images are decoded with this engine's VAE, as diffusers' ensemble example
    /// shares the base's.
    pub fn set_refiner(&mut self, refiner: Option<Arc<Engine>>) -> Result<()> {
        if let Some(r) = &refiner {
            if r.family != Family::SdxlRefiner {
                return Err(GenerateError::Input {
                    field: "use_refiner",
                    message: format!("{} is {}, not an SDXL refiner", r.path.display(), r.family),
                });
            }
            if !self.family.takes_refiner() {
                return Err(GenerateError::Input {
                    field: "use_refiner",
                    message: format!(
                        "{} is {}: the refiner follows an SDXL base model",
                        self.path.display(),
                        self.family
                    ),
                });
            }
        }
        self.refiner = refiner;
        Ok(())
    }

    /// The attached refiner, if any.
    pub fn refiner(&self) -> Option<&Arc<Engine>> {
        self.refiner.as_ref()
    }

    /// `true` reads long SDXL prompts as A1111's 75-token windows (up to 3, 231 tokens), as
    /// SD 1.5 always does; `false` (the default) truncates them to 77 tokens as diffusers does.
    pub fn with_long_prompts(mut self, long_prompts: bool) -> Engine {
        self.text = self.text.with_long_prompts(long_prompts);
        self
    }

    /// Whether long SDXL prompts become windows ([`Engine::with_long_prompts`]).
    pub fn long_prompts(&self) -> bool {
        self.text.long_prompts()
    }

    /// The prompt tokens `job` loses to the family's limit, one entry per request field that
    /// loses some (the negatives count only when guidance runs, as only then are they encoded).
    /// Tokenizes only; fails where rendering would, on a prompt weight that is not a number.
    pub fn dropped_tokens(&self, job: &Job) -> Result<Vec<DroppedTokens>> {
        let (negative, negative_2) = if job.cfg_scale > 1.0 {
            (job.negative_prompt.as_deref(), job.negative_prompt_2.as_deref())
        } else {
            (None, None)
        };
        Ok(self.text.dropped_tokens(&job.prompt, job.prompt_2.as_deref(), negative, negative_2)?)
    }

    /// The model family (sizes and defaults depend on it).
    pub fn family(&self) -> Family {
        self.family
    }

    /// What request validation needs of the model (family, text-encoder depth).
    pub fn facts(&self) -> ModelFacts {
        self.facts
    }

    /// The checkpoint path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the UNet is an inpainting one (latents, mask and masked-image latents in).
    pub fn is_inpainting(&self) -> bool {
        self.unet.config().in_channels == 2 * self.latent_channels() + 1
    }

    pub(super) fn unet_device(&self) -> Device {
        self.device
    }

    pub(super) fn latent_channels(&self) -> usize {
        self.vae.config().latent_channels
    }

    /// Renders `jobs`, which must share one [`super::BatchKey`]: their images are stacked,
    /// with the guidance halves, into one UNet call per model call, at most `max_batch` images
    /// at once (images whose prompts need different numbers of 77-token windows go in separate
    /// calls, so that each image is exactly what it would be alone). `progress(done, total)` is
    /// called after each model call. Returns each job's images in seed order.
    pub fn render(
        &self,
        jobs: &[Job],
        max_batch: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<RgbImage>>> {
        self.render_until(jobs, max_batch, progress, &AtomicBool::new(false))
    }

    /// [`Engine::render`] that gives up with [`GenerateError::Stopped`] at the first model call
    /// that would start once `stop` is set (the call in flight finishes; no images are returned).
    ///
    /// A job inpainting at full resolution renders its crop ([`FullRes::inputs`]) and gets it
    /// pasted back; one whose blurred mask is blank has nothing to inpaint and gets its init
    /// image back, once per seed.
    pub fn render_until(
        &self,
        jobs: &[Job],
        max_batch: usize,
        progress: &mut dyn FnMut(usize, usize),
        stop: &AtomicBool,
    ) -> Result<Vec<Vec<RgbImage>>> {
        enum Plan {
            /// Rendered as given, as `prepared[i]`.
            AsIs(usize),
            /// Rendered as `prepared[i]`, its crop, then pasted back.
            Crop(usize, FullRes),
            /// Nothing to inpaint.
            Unchanged,
        }
        let mut prepared = Vec::with_capacity(jobs.len());
        let plans: Vec<Plan> = jobs
            .iter()
            .map(|job| {
                let Some((init, padding, mask)) =
                    job.init.as_ref().and_then(|i| Some((i, i.full_res?, i.mask.as_ref()?)))
                else {
                    prepared.push(job.clone());
                    return Plan::AsIs(prepared.len() - 1);
                };
                let Some(full_res) = FullRes::plan(mask, padding) else { return Plan::Unchanged };
                let (image, mask) = full_res.inputs(&init.image);
                let init = InitImage { image, mask: Some(mask), full_res: None, ..init.clone() };
                prepared.push(Job { init: Some(init), ..job.clone() });
                Plan::Crop(prepared.len() - 1, full_res)
            })
            .collect();
        let mut rendered = self.render_stacked(&prepared, max_batch, progress, stop)?;
        Ok(jobs
            .iter()
            .zip(&plans)
            .map(|(job, plan)| match plan {
                Plan::AsIs(i) => std::mem::take(&mut rendered[*i]),
                Plan::Crop(i, full_res) => {
                    let original = &job.init.as_ref().expect("a cropped job has an init image").image;
                    rendered[*i].iter().map(|generated| full_res.paste(original, generated)).collect()
                }
                Plan::Unchanged => {
                    let original = &job.init.as_ref().expect("an unchanged job has an init image").image;
                    vec![original.clone(); job.images()]
                }
            })
            .collect())
    }

    /// [`Engine::render_until`] for jobs without a full-resolution crop to make.
    fn render_stacked(
        &self,
        jobs: &[Job],
        max_batch: usize,
        progress: &mut dyn FnMut(usize, usize),
        stop: &AtomicBool,
    ) -> Result<Vec<Vec<RgbImage>>> {
        let Some(first) = jobs.first() else { return Ok(Vec::new()) };
        let key = first.batch_key();
        if let Some(other) = jobs.iter().find(|j| j.batch_key() != key) {
            return Err(GenerateError::Input {
                field: "batch",
                message: format!(
                    "jobs of one render call must share size, sampler, steps and mode: {key:?} and {:?}",
                    other.batch_key()
                ),
            });
        }
        for job in jobs {
            self.check(job)?;
        }
        let conditionings = jobs.iter().map(|job| self.condition(job)).collect::<Result<Vec<_>>>()?;
        let refiner = match (first.refiner_at, &self.refiner) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(GenerateError::Input {
                    field: "use_refiner",
                    message: "the job hands over to a refiner, but none is attached to this engine".into(),
                });
            }
            (Some(_), Some(refiner)) => {
                let conditionings =
                    jobs.iter().map(|job| refiner.condition(job)).collect::<Result<Vec<_>>>()?;
                Some((refiner.as_ref(), conditionings))
            }
        };

        // Images grouped by context length (tokens), in job and seed order, then cut to size.
        let mut groups: Vec<(usize, Vec<Slot>)> = Vec::new();
        for (j, (job, cond)) in jobs.iter().zip(&conditionings).enumerate() {
            let tokens = cond.positive.hidden.dims()[1];
            let slots = job.seeds.iter().enumerate().map(|(k, &seed)| Slot { job: j, image: k, seed });
            match groups.iter_mut().find(|(t, _)| *t == tokens) {
                Some((_, group)) => group.extend(slots),
                None => groups.push((tokens, slots.collect())),
            }
        }
        let batches: Vec<&[Slot]> =
            groups.iter().flat_map(|(_, slots)| slots.chunks(max_batch.max(1))).collect();

        let calls = self.model_calls(first)?;
        let total = calls * batches.len();
        let refiner = refiner.as_ref().map(|(engine, conditionings)| (*engine, conditionings.as_slice()));
        let mut done = 0;
        let mut out: Vec<Vec<Option<RgbImage>>> = jobs.iter().map(|j| vec![None; j.images()]).collect();
        for slots in batches {
            let batch = Batch { engine: self, jobs, conditionings: &conditionings, slots, stop, refiner };
            let images = batch.run(&mut |_| {
                done += 1;
                progress(done, total);
            })?;
            for (slot, image) in slots.iter().zip(images) {
                out[slot.job][slot.image] = Some(image);
            }
        }
        Ok(out.into_iter().map(|images| images.into_iter().flatten().collect()).collect())
    }

    /// The model calls one batch of `job` runs, the refiner's included.
    fn model_calls(&self, job: &Job) -> Result<usize> {
        let strength = job.init.as_ref().map(|i| i.strength);
        let base = samplers::build(job.sampler, &self.scheduler, job.steps, strength)?;
        let Some(fraction) = job.refiner_at else { return Ok(base.timesteps().len()) };
        let calls = handover::base_calls(base.timesteps(), fraction, self.scheduler.num_train_timesteps);
        let refiner = self
            .refiner
            .as_ref()
            .map_or(Ok(0), |r| r.refiner_sampler(job, fraction).map(|s| s.timesteps().len()))?;
        Ok(calls + refiner)
    }

    /// This (refiner) engine's sampler for `job`, started where it takes over at `fraction`.
    pub(super) fn refiner_sampler(&self, job: &Job, fraction: f64) -> Result<Box<dyn samplers::Sampler>> {
        let mut sampler = samplers::build(job.sampler, &self.scheduler, job.steps, None)?;
        let order = samplers::order(job.sampler);
        let num_train = self.scheduler.num_train_timesteps;
        let inpainting = job.init.as_ref().is_some_and(|i| i.mask.is_some());
        let strength =
            if inpainting { handover::INPAINT_DEFAULT_STRENGTH } else { handover::IMG2IMG_DEFAULT_STRENGTH };
        sampler.start_at(handover::refiner_begin(
            sampler.timesteps(),
            fraction,
            num_train,
            job.steps,
            order,
            strength,
        ));
        Ok(sampler)
    }

    /// Checks what the engine needs of a job beyond the request layer's validation.
    fn check(&self, job: &Job) -> Result<()> {
        let input = |field, message: String| Err(GenerateError::Input { field, message });
        let multiple = self.vae.downscale() * (1 << (self.unet.config().levels() - 1));
        for (field, size) in [("width", job.width), ("height", job.height)] {
            if size == 0 || size % multiple != 0 {
                return input(
                    field,
                    format!("{size} is not a positive multiple of {multiple}, which this model needs"),
                );
            }
        }
        if job.seeds.is_empty() {
            return input("num_images", "a job needs at least one seed".into());
        }
        if job.steps == 0 {
            return input("steps", "at least one step is needed".into());
        }
        if !self.facts.has_layer_for(job.clip_skip) {
            let max = self.facts.max_clip_skip();
            return input("clip_skip", format!("this model's text encoders take clip_skip at most {max}"));
        }
        let size = (job.width as u32, job.height as u32);
        match &job.init {
            Some(init) => {
                if init.image.dimensions() != size {
                    return input(
                        "init_image",
                        format!("is {:?}, the job is {size:?}", init.image.dimensions()),
                    );
                }
                if let Some(mask) = &init.mask
                    && mask.dimensions() != size
                {
                    return input("mask_image", format!("is {:?}, the job is {size:?}", mask.dimensions()));
                }
                if !(init.strength > 0.0 && init.strength <= 1.0) {
                    return input("strength", format!("{} is outside (0, 1]", init.strength));
                }
                let order = samplers::order(job.sampler);
                samplers::img2img_begin(job.steps, init.strength, order)
                    .map_err(|e| GenerateError::Input { field: "strength", message: e.to_string() })?;
                if self.is_inpainting() && init.mask.is_none() {
                    return input("mask_image", "this inpainting model needs a mask_image".into());
                }
            }
            None if self.is_inpainting() => {
                return input(
                    "init_image",
                    "this inpainting model needs an init_image and a mask_image".into(),
                );
            }
            None => {}
        }
        self.check_control(job)?;
        self.check_ip(job)
    }

    /// The prompt's conditioning; the negative's only when guidance runs (diffusers encodes no
    /// negative prompt at a scale of at most 1). Each embedding encoded is checked finite.
    fn condition(&self, job: &Job) -> Result<Conditioning> {
        let (prompt, prompt_2) = (job.prompt.as_str(), job.prompt_2.as_deref());
        if job.cfg_scale > 1.0 {
            let (negative, negative_2) = (job.negative_prompt.as_deref(), job.negative_prompt_2.as_deref());
            let pair = self.text.encode_pair(prompt, prompt_2, negative, negative_2, job.clip_skip)?;
            check_embedding(&pair.positive, "prompt")?;
            check_embedding(&pair.negative, "negative prompt")?;
            Ok(pair)
        } else {
            let positive = self.text.encode(prompt, prompt_2, job.clip_skip)?;
            check_embedding(&positive, "prompt")?;
            Ok(Conditioning { negative: positive.clone(), positive })
        }
    }
}

/// The text encoder stage's check: hidden states and (SDXL) pooled embedding.
fn check_embedding(embedding: &PromptEmbedding, which: &str) -> Result<()> {
    let stage = || format!("the text encoder ({which})");
    finite::check(&embedding.hidden, stage)?;
    embedding.pooled.as_ref().map_or(Ok(()), |pooled| finite::check(pooled, stage))
}
