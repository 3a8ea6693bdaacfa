//! candle's side: `candle_transformers::models::stable_diffusion` built from the same safetensors
//! file (`StableDiffusionConfig::{v1_5, sdxl}` then `build_unet` / `build_vae`) in the requested
//! dtype on the CPU, called on the inputs transposed to NCHW. Output is read back and transposed
//! to NHWC for the comparison.
//!
//! candle's `UNet2DConditionModel` has no added-conditioning path (no `add_embedding`, no pooled
//! text or time ids), so for SDXL it is called with latents, timestep and context only; see
//! `weights::keep` for how kiln is made to compute the same function.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::stable_diffusion::StableDiffusionConfig;

use crate::cases::{Case, Model, Part, Precision};
use crate::inputs::{Inputs, nchw_to_nhwc};
use crate::timing::{Plan, Run, time_calls};

/// The note on SDXL UNet rows.
pub const NO_ADDED_CONDITIONING: &str = "candle's UNet has no SDXL added conditioning (pooled text, time ids): \
     it is called without; kiln's add_embedding weights are zero so both compute the same function";

/// candle's config for `model` (no attention slicing; the image size is only used by candle's
/// own pipeline, not by the UNet or the VAE).
fn config(model: Model) -> StableDiffusionConfig {
    match model {
        Model::Sd15 => StableDiffusionConfig::v1_5(None, None, None),
        Model::Sdxl => StableDiffusionConfig::sdxl(None, None, None),
    }
}

/// Reads a candle NCHW output back as host f32 NHWC.
fn read_nhwc(out: Tensor) -> anyhow::Result<Vec<f32>> {
    let (n, c, h, w) = out.dims4()?;
    let values = out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(nchw_to_nhwc(&values, [n, c, h, w]))
}

/// Builds `case`'s model from `file` (the random safetensors file) and makes the calls of `plan`.
pub fn run(
    case: &Case,
    precision: Precision,
    file: &Path,
    inputs: &Inputs,
    plan: &Plan,
) -> anyhow::Result<Run> {
    let label = format!("{} {precision} candle", case.name);
    let device = Device::Cpu;
    let dtype = precision.candle();
    let sd = config(case.model);
    let (nchw, dims) = inputs.latents_nchw();
    let latents = Tensor::from_vec(nchw, dims.to_vec(), &device)?.to_dtype(dtype)?; // [B, 4, h, w]
    match case.part {
        Part::Unet => {
            let t = Instant::now();
            let unet = sd.build_unet(file, &device, 4, false, dtype)?;
            let load_secs = t.elapsed().as_secs_f64();
            eprintln!("{label}: built the UNet in {load_secs:.1} s");
            let context = Tensor::from_vec(inputs.context.clone(), inputs.context_dims.to_vec(), &device)?
                .to_dtype(dtype)?; // [B, 77, Cc]
            let timestep = inputs.timestep as f64;
            let (times, output) = time_calls(
                plan,
                &label,
                || Ok(unet.forward(&latents, timestep, &context)?), // [B, 4, h, w]
                read_nhwc,
            )?;
            let note = inputs.pooled.is_some().then(|| NO_ADDED_CONDITIONING.to_string());
            Ok(Run { times, output, load_secs, note })
        }
        Part::Vae => {
            let t = Instant::now();
            let vae = sd.build_vae(file, &device, dtype)?;
            let load_secs = t.elapsed().as_secs_f64();
            eprintln!("{label}: built the VAE in {load_secs:.1} s");
            let (times, output) = time_calls(
                plan,
                &label,
                || Ok(vae.decode(&latents)?), // [1, 3, 8h, 8w]
                read_nhwc,
            )?;
            Ok(Run { times, output, load_secs, note: None })
        }
    }
}
