//! kiln-pipeline: the tokenizer, text encoders, UNet, VAE, samplers, OctoAI request schema and
//! the JSONL batch runner, built on kiln-runtime.
//!
//! - [`demo`]: the built-in demo model (tiny SDXL topology, untrained random weights), cached;
//! - [`embeddings`]: textual-inversion embedding files;
//! - [`generate`]: jobs to images (text-to-image, img2img, inpainting), batched;
//! - [`image`]: request and response image codecs;
//! - [`lora`]: LoRA, LoCon, LoHa and LoKr files merged into a loaded model and undone;
//! - [`models`]: the networks (text encoders, UNet, VAE) and the layers they share;
//! - [`prompt`]: AUTOMATIC1111's prompt weighting syntax (`(word:1.2)`, `[word]`, `BREAK`);
//! - [`request`]: OctoAI requests from JSONL lines (pydantic-style 422 errors, style presets),
//!   resolved into jobs, and the response records;
//! - [`runner`]: the JSONL batch runner (`kiln render`): batching, resume, error records;
//! - [`rng`]: seeded noise equal bit for bit to `torch.randn` on a CPU generator;
//! - [`samplers`]: OctoAI's 21 sampler names, their schedules and update rules (diffusers parity);
//! - [`tokenizer`]: CLIP's BPE tokenizer and A1111-style long-prompt windows.
#![deny(missing_docs)]

pub mod demo;
pub mod embeddings;
pub mod generate;
pub mod image;
pub mod lora;
pub mod models;
pub mod prompt;
pub mod request;
pub mod rng;
pub mod runner;
pub mod samplers;
pub mod tokenizer;
