//! OctoAI image-generation requests: one JSONL line in, a typed and range-checked [`Request`]
//! (or OctoAI's 422 body) out; resolution against a model family; the response records.
//!
//! - [`parse_line`]: one line of a JSONL file to a [`Line`] (its id, the request or every field
//!   error pydantic would report, unknown fields included);
//! - [`Request::resolve`]: against the model's [`ModelFacts`](crate::models::ModelFacts): family
//!   defaults (size), the supported sizes, style presets, clip-skip convention and depth, and
//!   random seeds, giving a [`generate::Job`](crate::generate::Job);
//! - [`RequestError`] / [`FieldError`]: `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`;
//! - [`Response`] / [`ErrorRecord`]: the lines of `responses.jsonl`;
//! - [`style`]: the 78 style presets of OctoAI's `SDXLStyles`, written for kiln.
//!
//! Validation follows the API schema (`ImageGenerationRequest` in
//! `shared/spec/octoai-imagegen-openapi.json`) the way FastAPI and pydantic v2 apply it: lax
//! conversions (`"30"` is a valid `steps`), every error of a line collected in one pass, error
//! types and messages in pydantic's words. Where kiln differs from OctoAI, on purpose:
//!
//! - Unknown fields are rejected as the schema says (`additionalProperties: false`), with
//!   pydantic's `extra_forbidden` error per field, which carries the value sent as `input`;
//!   kiln's own fields ([`KILN_FIELDS`]: `id`) are accepted beside the schema's.
//! - Fields kiln does not implement are an error naming the field (type `not_implemented`)
//!   when they ask for something: `transfer_images` not null, and any non-null `ip_adapter*`
//!   field other than the five [`ip`] reads; a ControlNet or IP-Adapter with `mask_image`.
//! - ControlNet ([`control`]): a `controlnet` name or the `controlnet-sdxl` engine without a
//!   `controlnet_image` is `missing` on the image, as OctoAI's schema says it is required.
//! - IP-Adapter ([`ip`]): its fields are not in the schema; kiln reads `ip_adapter`,
//!   `ip_adapter_image`, `ip_adapter_scale`, `ip_adapter_method` and `ip_adapter_mask_image`.
//! - `use_refiner` defaults to true in OctoAI's schema: an SDXL request that leaves it out uses
//!   the refiner when the runner has one, and renders with the base alone (with a warning)
//!   when it has none; an explicit `true` without one is an error on the field (see
//!   [`RefinerUse`]). `log_prompt` is validated and has no effect (kiln never stores prompts).
//! - `inpaint_full_res` needs `mask_image`, and its padding must not be negative (pydantic takes
//!   any integer; a negative margin would shrink the mask's box).
//! - `loras` weights must be finite (checked on resolving; pydantic parses `1e400` as infinity):
//!   an infinite weight would turn the model's weights into infinities.
//! - Rules the schema states only in prose are checked too: each seed in `1..2^32`, the sizes
//!   each family supports, `prompt_2` / `negative_prompt_2` only for SDXL, style presets only for
//!   SDXL, `mask_image` only with `init_image`, `outpainting` only with both; an inpainting
//!   checkpoint needs both images.
//! - `id` (kiln's own field) names the request; it also names image files, so it must be 1 to 200
//!   characters without `/`, `\` or control characters.
//! - `engine` (kiln's own field, optional) says which OctoAI engine the request was written for
//!   (`sdxl`, `sd`, `ssd`, `controlnet-sdxl`: the `{engine}` of `/generate/{engine}`); a model
//!   of another family is a 422 on the field.

mod coerce;
pub mod control;
mod engine;
mod error;
pub mod ip;
mod parse;
mod resolve;
mod response;
mod seed;
mod sizes;
pub mod style;
mod unimplemented;
mod unknown;
mod wide;

use crate::image::ImageEncoding;
use crate::samplers::SamplerName;

pub use engine::EngineName;
pub use error::{FieldError, Loc, RequestError};
pub use parse::{Line, parse_for_engine, parse_line};
pub use resolve::{RefinerUse, Resolved};
pub use response::{ErrorRecord, ImageGeneration, Response, ResponseBody};
pub use sizes::supported_sizes;
pub use style::Style;
pub use unknown::KILN_FIELDS;

/// OctoAI's default `cfg_scale`.
pub const DEFAULT_CFG_SCALE: f64 = 12.0;
/// OctoAI's default `steps`.
pub const DEFAULT_STEPS: usize = 30;
/// OctoAI's default `sampler`.
pub const DEFAULT_SAMPLER: SamplerName = SamplerName::DDIM;
/// OctoAI's default `high_noise_frac`: the base model runs the first 80% of the schedule.
pub const DEFAULT_HIGH_NOISE_FRAC: f64 = 0.8;
/// OctoAI's default `inpaint_full_res_padding`, in pixels.
pub const DEFAULT_FULL_RES_PADDING: i64 = 32;

/// One request, type- and range-checked, with OctoAI's defaults filled in (the defaults that
/// depend on the model family are filled in by [`Request::resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The OctoAI engine the request targets, checked against the model; `None`: any.
    pub engine: Option<EngineName>,
    /// The ControlNet fields of a ControlNet request.
    pub control: Option<control::ControlRequest>,
    /// The IP-Adapter fields of an IP-Adapter request.
    pub ip: Option<ip::IpRequest>,
    /// What to draw (A1111 attention syntax allowed); at most 10000 characters.
    pub prompt: String,
    /// SDXL's second text encoder's prompt (`None`: the prompt).
    pub prompt_2: Option<String>,
    /// What to avoid.
    pub negative_prompt: Option<String>,
    /// SDXL's second text encoder's negative prompt (`None`: the negative prompt).
    pub negative_prompt_2: Option<String>,
    /// Classifier-free guidance scale, in (0, 50]; `None`: the checkpoint's default
    /// (`NAME.json`), else [`DEFAULT_CFG_SCALE`].
    pub cfg_scale: Option<f64>,
    /// Denoising steps, 1 to 200; `None`: the checkpoint's default, else [`DEFAULT_STEPS`].
    pub steps: Option<usize>,
    /// The sampler; `None`: the checkpoint's default, else [`DEFAULT_SAMPLER`].
    pub sampler: Option<SamplerName>,
    /// One entry per image (1 to 16): the seed asked for, or `None` for a random one.
    pub seeds: Vec<Option<u32>>,
    /// Output width as sent (checked against the family's sizes by [`Request::resolve`]).
    pub width: Option<i64>,
    /// Output height as sent (checked against the family's sizes by [`Request::resolve`]).
    pub height: Option<i64>,
    /// Response image encoding; default JPEG.
    pub image_encoding: ImageEncoding,
    /// Text-encoder layers to use counted from the end, OctoAI/A1111 convention (1 = the last
    /// layer, the default); 1 to 12.
    pub clip_skip: Option<usize>,
    /// A style preset applied to the prompts.
    pub style_preset: Option<&'static Style>,
    /// img2img / inpainting start image, base64 (decoded by the runner).
    pub init_image: Option<String>,
    /// Inpainting mask, base64 (white is repainted).
    pub mask_image: Option<String>,
    /// img2img strength, in (0, 1]; default 0.8.
    pub strength: f64,
    /// Fill the masked area before img2img.
    pub outpainting: bool,
    /// A checkpoint name for the runner to look up in its assets directory.
    pub checkpoint: Option<String>,
    /// LoRA names (looked up in the assets directory's `loras/`) and their weights, sorted by
    /// name; empty for none.
    pub loras: Vec<(String, f64)>,
    /// A VAE name (looked up in the assets directory's `vaes/`) replacing the checkpoint's own.
    pub vae: Option<String>,
    /// Textual-inversion names (looked up in the assets directory's `embeddings/`) and their
    /// trigger words, sorted by name; empty for none.
    pub textual_inversions: Vec<(String, String)>,
    /// `use_refiner` as sent (`None`: left out; the schema's default is true).
    pub use_refiner: Option<bool>,
    /// The fraction of the schedule the base model runs before the refiner, in [0, 1].
    pub high_noise_frac: f64,
    /// Inpaint the mask's surroundings at full resolution (A1111's "only masked").
    pub inpaint_full_res: bool,
    /// The margin around the mask for `inpaint_full_res`, in pixels, as sent.
    pub inpaint_full_res_padding: i64,
}

impl Request {
    /// The number of images asked for.
    pub fn num_images(&self) -> usize {
        self.seeds.len()
    }
}
