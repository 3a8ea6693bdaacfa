//! The model flags `kiln render` and `kiln serve` share (flattened into each command's
//! arguments), and the [`RendererOptions`] they make.

use std::path::PathBuf;

use kiln_pipeline::runner::RendererOptions;
use kiln_runtime::{DType, Device};

use crate::render::bytes;

/// The model, its library, dtype, batch size and loading flags.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// A single-file checkpoint or a diffusers folder (default: the built-in demo model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Directory whose checkpoints/NAME(.safetensors) requests name with "checkpoint".
    #[arg(long)]
    pub assets: Option<PathBuf>,
    /// f32, f16 or bf16 (default: f32 on the CPU, f16 on CUDA).
    #[arg(long)]
    pub dtype: Option<DType>,
    /// The most images rendered in one batch.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch_size: u32,
    /// Read SDXL prompts past 77 tokens as A1111-style 75-token windows (up to 231 tokens)
    /// instead of truncating them as diffusers and OctoAI do.
    #[arg(long)]
    pub long_prompts: bool,
    /// Load weights without checking that they are finite (faster on large checkpoints; a
    /// render that turns NaN still fails, naming the stage).
    #[arg(long)]
    pub skip_weight_check: bool,
    /// The most weight memory the checkpoints requests name (`"checkpoint"`) may hold loaded at
    /// once, least recently used unloaded first: bytes, or with a K, M, G or T suffix (powers
    /// of 1024). Default: half the device's free memory at the start.
    #[arg(long, value_name = "BYTES", value_parser = bytes)]
    pub model_cache_bytes: Option<u64>,
    /// The SDXL refiner (single file or diffusers folder) for SDXL requests with use_refiner
    /// (OctoAI's default: true). Default: checkpoints/sdxl-refiner in --assets, if there.
    #[arg(long)]
    pub refiner: Option<PathBuf>,
}

impl ModelArgs {
    /// The renderer options for `device` (the dtype defaults to f32 on the CPU, f16 on CUDA).
    pub fn renderer(&self, device: Device) -> RendererOptions {
        RendererOptions {
            model: self.model.clone(),
            assets: self.assets.clone(),
            device,
            dtype: self.dtype.unwrap_or(if device.is_cpu() { DType::F32 } else { DType::F16 }),
            batch_size: self.batch_size as usize,
            long_prompts: self.long_prompts,
            skip_weight_check: self.skip_weight_check,
            model_cache_bytes: self.model_cache_bytes,
            refiner: self.refiner.clone(),
        }
    }
}
