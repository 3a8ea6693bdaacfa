//! The entry point for serving stacks (and what `kiln render` and `kiln serve` are built on):
//! load a [`Renderer`], check requests with its [`Validator`], render batches of [`Prepared`]
//! requests, and turn each [`Outcome`] into OctoAI's response body with [`encode_response`].
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use kiln_pipeline::request::parse_line;
//! use kiln_pipeline::runner::{Outcome, Renderer, RendererOptions, encode_response};
//!
//! let mut renderer = Renderer::load(&RendererOptions::default())?; // the demo model on the CPU
//! let line = parse_line(r#"{"prompt": "a lighthouse at dusk", "steps": 4}"#, 1);
//! let prepared = renderer.validator().prepare(line.id, line.request.expect("valid"))
//!     .expect("prepared");
//! let batch = renderer.render(vec![prepared], &mut |_, _, _| {}, &AtomicBool::new(false))
//!     .expect("not stopped");
//! for (prepared, outcome) in &batch.results {
//!     if let Outcome::Done(done) = outcome {
//!         let (response, _bytes) = encode_response(prepared, done).expect("encoded");
//!         println!("{}", serde_json::to_string(&response.body())?);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use ::image::RgbImage;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kiln_runtime::checkpoint::OpenOptions;
use kiln_runtime::{DType, Device};

use super::models::Models;
use super::prepare::{Prepared, Validator};
use super::{ModelLoad, RunError, batch, records, refiner_path, render};
use crate::generate::{Engine, Job};
use crate::image::encode;
use crate::request::{ImageGeneration, RequestError, Response};

/// What a [`Renderer`] loads and how it renders (`kiln render`'s and `kiln serve`'s model flags).
#[derive(Clone, Debug)]
pub struct RendererOptions {
    /// The checkpoint for requests without `checkpoint`; `None`: the demo model, made in
    /// [`crate::demo::default_cache_dir`] on first use.
    pub model: Option<PathBuf>,
    /// The assets library: `checkpoints/NAME`, `loras/NAME`, ... for requests' names.
    pub assets: Option<PathBuf>,
    /// Where to compute.
    pub device: Device,
    /// The compute dtype.
    pub dtype: DType,
    /// The most images in one engine call.
    pub batch_size: usize,
    /// Read long SDXL prompts as A1111's windows instead of truncating them to 77 tokens.
    pub long_prompts: bool,
    /// Load weights without checking they are finite.
    pub skip_weight_check: bool,
    /// The most bytes of asset checkpoints' weights kept loaded at once (`None`: half the
    /// device's free memory at the start).
    pub model_cache_bytes: Option<u64>,
    /// The SDXL refiner; `None`: `checkpoints/sdxl-refiner` in the library if there is one.
    pub refiner: Option<PathBuf>,
}

impl Default for RendererOptions {
    /// The demo model on the CPU in f32, batches of 4.
    fn default() -> RendererOptions {
        RendererOptions {
            model: None,
            assets: None,
            device: Device::Cpu,
            dtype: DType::F32,
            batch_size: 4,
            long_prompts: false,
            skip_weight_check: false,
            model_cache_bytes: None,
            refiner: None,
        }
    }
}

/// Loaded models (the default engine, then asset checkpoints, LoRAs, ControlNets and adapters as
/// requests name them) and the way to render batches with them.
#[derive(Debug)]
pub struct Renderer {
    models: Models,
    validator: Validator,
    batch_size: usize,
    default_load: ModelLoad,
}

/// What rendering one request came to.
#[derive(Debug)]
pub enum Outcome {
    /// Its images.
    Done(Done),
    /// What went wrong, as OctoAI's 422 body (an image that does not decode, an asset that
    /// cannot be applied, a failed render: type `render_failed` on the body).
    Failed(RequestError),
    /// Its checkpoint cannot be loaded (why): the file is at fault, not the request.
    Unusable(String),
}

/// A rendered request.
#[derive(Debug)]
pub struct Done {
    /// The job rendered (seeds, size, prompts, images as the engine took them).
    pub job: Job,
    /// One image per seed.
    pub pictures: Vec<RgbImage>,
    /// Its share of the batch's wall time.
    pub prediction_time_ms: f64,
    /// The response's `warnings`.
    pub warnings: Vec<String>,
    /// Those of the warnings about this request's prompts (tokens dropped), for a log.
    pub prompt_warnings: Vec<String>,
}

/// A rendered batch: each request with its outcome, in the order given, and what loading its
/// assets said for a log (a LoRA's keys merged, a ControlNet loaded).
#[derive(Debug)]
pub struct Batch {
    /// Each request and its outcome.
    pub results: Vec<(Prepared, Outcome)>,
    /// Messages for a log.
    pub log: Vec<String>,
}

/// The render was stopped (the stop flag) before every request had its outcome.
#[derive(Debug)]
pub struct Stopped {
    /// The requests rendered before the stop, with their outcomes (none of a group cut short).
    pub done: Batch,
    /// How many requests have no outcome.
    pub left: usize,
}

impl Renderer {
    /// Loads the default model (the demo model without `options.model`) and checks the refiner.
    pub fn load(options: &RendererOptions) -> Result<Renderer, RunError> {
        super::check_assets(options.assets.as_deref())?;
        let model_path = match &options.model {
            Some(path) => path.clone(),
            None => crate::demo::ensure_demo_model(&crate::demo::default_cache_dir())?,
        };
        let open = OpenOptions::default().skip_weight_check(options.skip_weight_check);
        let loading = Instant::now();
        let engine = Engine::load_with(&model_path, &open, options.dtype, options.device)
            .map_err(|source| RunError::Model { path: model_path.clone(), source: Box::new(source) })?
            .with_long_prompts(options.long_prompts);
        let default_load = ModelLoad { path: model_path.clone(), seconds: loading.elapsed().as_secs_f64() };
        let budget =
            options.model_cache_bytes.unwrap_or_else(|| super::models::default_cache_bytes(options.device));
        let refiner = refiner_path(options.assets.as_deref(), options.refiner.as_deref())?;
        let validator = Validator::new(options.assets.clone(), model_path, engine.facts(), refiner.is_some());
        let models = Models::new(engine, options.dtype, options.device, open, budget).with_refiner(refiner);
        Ok(Renderer { models, validator, batch_size: options.batch_size.max(1), default_load })
    }

    /// The validator for this renderer's model and library (clone it for other threads).
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// The default model's checkpoint.
    pub fn default_model(&self) -> &Path {
        self.models.default_path()
    }

    /// Every checkpoint loaded so far (the default first), with its load time.
    pub fn loads(&self) -> Vec<ModelLoad> {
        std::iter::once(self.default_load.clone()).chain(self.models.loads().iter().cloned()).collect()
    }

    /// The most images in one engine call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Renders `requests`: those with equal [`Prepared::key`]s together, up to the batch size per
    /// engine call. `report(group_images, done, total)` follows each group's progress (units of
    /// the group's work). Once `stop` is set the render ends before its next UNet call.
    pub fn render(
        &mut self,
        requests: Vec<Prepared>,
        report: &mut dyn FnMut(usize, usize, usize),
        stop: &AtomicBool,
    ) -> Result<Batch, Stopped> {
        let keyed = requests.into_iter().map(|p| (p.key(), p.images(), p));
        let mut groups = batch::group(keyed, self.batch_size).into_iter();
        let mut batch = Batch { results: Vec::new(), log: Vec::new() };
        while let Some(group) = groups.next() {
            match render::group(group.items, &mut self.models, self.batch_size, report, stop) {
                Ok(done) => {
                    batch.results.extend(done.results);
                    batch.log.extend(done.log);
                }
                Err(render::Stopped { left, log }) => {
                    batch.log.extend(log);
                    let left = left + groups.map(|g| g.items.len()).sum::<usize>();
                    return Err(Stopped { done: batch, left });
                }
            }
        }
        Ok(batch)
    }
}

/// A rendered request's response (OctoAI's `ImageGenerationResponse` plus its id and warnings)
/// and each image's encoded bytes (PNG or JPEG, as the request asked); an image that cannot be
/// encoded is an error record.
pub fn encode_response(prepared: &Prepared, done: &Done) -> Result<(Response, Vec<Vec<u8>>), RequestError> {
    let (job, pictures) = (&done.job, &done.pictures);
    if pictures.len() != job.seeds.len() {
        let msg = format!("the engine returned {} images for {} seeds", pictures.len(), job.seeds.len());
        return Err(RequestError::body(msg, records::RENDER_FAILED));
    }
    let encoding = prepared.resolved.image_encoding;
    let mut images = Vec::with_capacity(pictures.len());
    let mut files = Vec::with_capacity(pictures.len());
    for (k, (picture, &seed)) in pictures.iter().zip(&job.seeds).enumerate() {
        let bytes = encode(picture, encoding).map_err(|e| {
            RequestError::body(format!("cannot encode image {k}: {e}"), records::RENDER_FAILED)
        })?;
        images.push(ImageGeneration::new(STANDARD.encode(&bytes), seed));
        files.push(bytes);
    }
    let response = Response {
        id: prepared.id.clone(),
        images,
        prediction_time_ms: done.prediction_time_ms,
        warnings: done.warnings.clone(),
    };
    Ok((response, files))
}
