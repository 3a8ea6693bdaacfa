//! The model under test and its inputs: where the weights come from, what is loaded, and one
//! call of the thing being timed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_pipeline::generate::{Engine, Job};
use kiln_pipeline::models::conditioning::TextConditioner;
use kiln_pipeline::models::unet::{AddedConditioning, UNet};
use kiln_pipeline::models::vae::Vae;
use kiln_pipeline::samplers::SamplerName;
use kiln_runtime::checkpoint::manifest::{Manifest, RandomFill};
use kiln_runtime::checkpoint::{Checkpoint, Dtype, Family};
use kiln_runtime::random::SplitMix64;
use kiln_runtime::{DType, Device, Tensor};

use super::{Args, RandomFamily, What};

/// Where the weights come from; a temporary folder of random weights lives as long as this.
pub struct ModelSource {
    /// The checkpoint to open.
    pub path: PathBuf,
    /// How the report names it.
    pub label: String,
    _random: Option<tempfile::TempDir>,
}

impl ModelSource {
    /// The checkpoint `args` name, writing `--random` weights first (only the components that
    /// `args.what` uses get values; the rest are sparse zeros).
    pub fn from_args(args: &Args) -> Result<ModelSource> {
        if let Some(path) = &args.model {
            return Ok(ModelSource { path: path.clone(), label: path.display().to_string(), _random: None });
        }
        let Some(family) = args.random else {
            let cache = kiln_pipeline::demo::default_cache_dir();
            let path = kiln_pipeline::demo::ensure_demo_model(&cache)?;
            return Ok(ModelSource { path, label: "the built-in demo model".into(), _random: None });
        };
        let (name, text) = match family {
            RandomFamily::Sd15 => ("sd15", include_str!("../../../fixtures/manifests/sd15.diffusers.json")),
            RandomFamily::Sdxl => {
                ("sdxl_base", include_str!("../../../fixtures/manifests/sdxl_base.diffusers.json"))
            }
        };
        let manifest: Manifest = serde_json::from_str(text).context("the built-in key manifest")?;
        let folders: &[&str] = match args.what {
            What::Unet | What::Step => &["unet/"],
            What::Vae => &["vae/"],
            What::Text => &["text_encoder/", "text_encoder_2/"],
            What::Image | What::Peak => &["unet/", "vae/", "text_encoder/", "text_encoder_2/"],
        };
        let stored = match args.random_dtype {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
        };
        let dir = tempfile::Builder::new().prefix("kiln-bench-").tempdir().context("a temporary folder")?;
        let keep = |file: &str, _: &str| folders.iter().any(|f| file.starts_with(f));
        let started = std::time::Instant::now();
        let path = manifest
            .materialize_random(
                dir.path(),
                &RandomFill { seed: 0x6b69_6c6e, keep: &keep, dtype: Some(stored) },
            )
            .with_context(|| format!("writing random {name} weights to {}", dir.path().display()))?;
        eprintln!(
            "wrote random {name} weights ({} of {}, stored {}) in {:.1} s",
            folders.join(" "),
            dir.path().display(),
            args.random_dtype,
            started.elapsed().as_secs_f64()
        );
        let label = format!("random {name} weights (published layout, stored {})", args.random_dtype);
        Ok(ModelSource { path, label, _random: Some(dir) })
    }
}

/// The loaded model and the inputs of one timed call.
pub struct Subject {
    what: What,
    model: Loaded,
    /// How the report names what is timed.
    pub label: String,
    /// The compute dtype and device.
    pub dtype: DType,
    /// The device.
    pub device: Device,
}

#[allow(clippy::large_enum_variant)] // one per process
enum Loaded {
    UNet {
        unet: UNet,
        latents: Tensor,
        timesteps: Vec<f32>,
        context: Tensor,
        added: Option<AddedConditioning>,
    },
    Vae {
        vae: Vae,
        latents: Tensor,
    },
    Text {
        text: TextConditioner,
        pairs: usize,
    },
    Image {
        engine: Box<Engine>,
        job: Job,
    },
}

/// The prompt pair `text` and `image` encode: long enough to fill most of a window.
const PROMPT: &str = "a photograph of an astronaut riding a horse on the moon, highly detailed, \
    sharp focus, dramatic lighting, wide angle, 35mm film, golden hour, by a famous photographer";
const NEGATIVE: &str = "blurry, low quality, jpeg artifacts, watermark, text, deformed";

impl Subject {
    /// Loads what `args.what` needs from `source` and draws its inputs.
    pub fn load(args: &Args, source: &ModelSource, dtype: DType, device: Device) -> Result<Subject> {
        let ckpt = Checkpoint::open(&source.path)?;
        let family = ckpt.family();
        let size = args.size.unwrap_or(if family.is_sdxl() { 1024 } else { 512 });
        if size == 0 || !size.is_multiple_of(8) {
            bail!("--size {size}: must be a positive multiple of 8");
        }
        let batch = args.batch as usize;
        let latent = size / 8;
        let mut rng = Inputs(SplitMix64::new(0x5eed));
        let (model, what) = match args.what {
            What::Unet | What::Step => {
                let unet = UNet::load(&ckpt, dtype, device)?;
                let rows = if args.what == What::Step { 2 * batch } else { batch };
                let config = unet.config().clone();
                let latents = rng.tensor(&[rows, latent, latent, config.in_channels])?; // [B, h, w, 4]
                let context = rng.tensor(&[rows, 77, config.cross_attention_dim])?; // [B, 77, C]
                let added =
                    match (config.projection_class_embeddings_input_dim, config.addition_time_embed_dim) {
                        (Some(projection), Some(time)) if unet.needs_added_conditioning() => {
                            let ids = if family == Family::SdxlRefiner { 5 } else { 6 };
                            let pooled = projection - ids * time;
                            let px = size as f32;
                            let one: Vec<f32> = if ids == 5 {
                                vec![px, px, 0.0, 0.0, 6.0]
                            } else {
                                vec![px, px, 0.0, 0.0, px, px]
                            };
                            Some(AddedConditioning {
                                text_embeds: rng.tensor(&[rows, pooled])?,
                                time_ids: one.repeat(rows),
                            })
                        }
                        _ => None,
                    };
                let what = if args.what == What::Step {
                    format!(
                        "one guided step (UNet at batch {rows}: {batch} image(s) x 2 guidance halves), {size}x{size}"
                    )
                } else {
                    format!("one UNet call at batch {rows}, {size}x{size} (latent {latent}x{latent})")
                };
                (Loaded::UNet { unet, latents, timesteps: vec![500.0; rows], context, added }, what)
            }
            What::Vae => {
                let vae = Vae::load(&ckpt, dtype, device)?;
                let latents = rng.tensor(&[batch, latent, latent, vae.config().latent_channels])?;
                (
                    Loaded::Vae { vae, latents },
                    format!("one VAE decode of {batch} latent(s), {latent}x{latent} -> {size}x{size}"),
                )
            }
            What::Text => {
                let text = TextConditioner::load(&ckpt, dtype, device)?;
                (
                    Loaded::Text { text, pairs: batch },
                    format!("the text encoder(s) on {batch} prompt + negative pair(s)"),
                )
            }
            What::Image | What::Peak => {
                let engine = Engine::load(&source.path, dtype, device)?;
                let job = Job {
                    prompt: PROMPT.into(),
                    prompt_2: None,
                    negative_prompt: Some(NEGATIVE.into()),
                    negative_prompt_2: None,
                    clip_skip: None,
                    cfg_scale: 7.0,
                    steps: args.steps as usize,
                    sampler: SamplerName::DDIM,
                    seeds: (0..batch as u32).collect(),
                    width: size,
                    height: size,
                    init: None,
                    refiner_at: None,
                    control: None,
                    ip: None,
                };
                let what = format!(
                    "{batch} whole image(s), {size}x{size}, {} DDIM steps with guidance 7",
                    args.steps
                );
                (Loaded::Image { engine: Box::new(engine), job }, what)
            }
        };
        Ok(Subject {
            what: args.what,
            model,
            label: format!("{what}; {}; {family:?}", source.label),
            dtype,
            device,
        })
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        format!("timing {}, computing in {} on {}", self.label, self.dtype, self.device)
    }

    /// Runs the timed thing once, to the end (results copied to the host, so a GPU's queue is
    /// drained inside the timing).
    pub fn call(&self) -> Result<()> {
        match &self.model {
            Loaded::UNet { unet, latents, timesteps, context, added } => {
                let out = unet.forward(latents, timesteps, context, added.as_ref())?;
                let out = if self.what == What::Step { guide(&out, 7.0)? } else { out };
                out.to_vec_f32()?;
            }
            Loaded::Vae { vae, latents } => {
                vae.decode(latents)?.to_vec_f32()?;
            }
            Loaded::Text { text, pairs } => {
                for _ in 0..*pairs {
                    let c = text.encode_pair(PROMPT, None, Some(NEGATIVE), None, None)?;
                    c.negative.hidden.to_vec_f32()?;
                }
            }
            Loaded::Image { engine, job } => {
                let images = engine.render(std::slice::from_ref(job), job.seeds.len(), &mut |_, _| {})?;
                if images.first().is_none_or(|i| i.len() != job.seeds.len()) {
                    bail!("the render returned no images");
                }
            }
        }
        Ok(())
    }
}

/// Classifier-free guidance on a UNet output whose first half is the prompt's and second half
/// the negative's: `uncond + scale (cond - uncond)`, `[2B, ..] -> [B, ..]`.
fn guide(out: &Tensor, scale: f32) -> Result<Tensor> {
    let b = out.dims()[0] / 2;
    let (cond, uncond) = (out.narrow(0, 0, b)?, out.narrow(0, b, b)?);
    Ok(uncond.add(&cond.add(&uncond.affine(-1.0, 0.0)?)?.affine(scale, 0.0)?)?)
}

/// Fixed-seed inputs of roughly unit variance, as latents and text states are.
struct Inputs(SplitMix64);

impl Inputs {
    fn tensor(&mut self, shape: &[usize]) -> Result<Tensor> {
        let data = (0..shape.iter().product()).map(|_| self.0.unit_variance()).collect();
        Ok(Tensor::from_f32(data, shape, DType::F32, Device::Cpu)?)
    }
}
