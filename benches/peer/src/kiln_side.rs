//! kiln's side: opens the diffusers folder with `Checkpoint::open`, loads the UNet or the VAE in
//! the requested dtype on the CPU, and calls it on the NHWC inputs. Output comes back NHWC.

use std::path::Path;
use std::time::Instant;

use kiln_pipeline::models::unet::{AddedConditioning, UNet};
use kiln_pipeline::models::vae::Vae;
use kiln_runtime::checkpoint::Checkpoint;
use kiln_runtime::{DType, Device, Tensor};

use crate::cases::{Case, Part, Precision};
use crate::inputs::Inputs;
use crate::timing::{Plan, Run, time_calls};

/// A host f32 buffer as a kiln CPU tensor (kiln converts it to the model's dtype on entry).
fn tensor(values: &[f32], dims: &[usize]) -> anyhow::Result<Tensor> {
    Ok(Tensor::from_f32(values.to_vec(), dims, DType::F32, Device::Cpu)?)
}

/// Loads `case`'s model from the diffusers folder `root` and makes the calls of `plan`.
pub fn run(
    case: &Case,
    precision: Precision,
    root: &Path,
    inputs: &Inputs,
    plan: &Plan,
) -> anyhow::Result<Run> {
    let label = format!("{} {precision} kiln", case.name);
    let latents = tensor(&inputs.latents, &inputs.latent_dims)?; // [B, h, w, 4]
    match case.part {
        Part::Unet => {
            let t = Instant::now();
            let unet = {
                let ckpt = Checkpoint::open(root)?;
                UNet::load(&ckpt, precision.kiln(), Device::Cpu)?
            };
            let load_secs = t.elapsed().as_secs_f64();
            eprintln!("{label}: loaded the UNet in {load_secs:.1} s");
            let context = tensor(&inputs.context, &inputs.context_dims)?; // [B, 77, Cc]
            let added = match &inputs.pooled {
                Some((pooled, dims)) => Some(AddedConditioning {
                    text_embeds: tensor(pooled, dims)?, // [B, 1280]
                    time_ids: inputs.time_ids.clone(),  // [B * 6]
                }),
                None => None,
            };
            let timesteps = vec![inputs.timestep; inputs.latent_dims[0]];
            let (times, output) = time_calls(
                plan,
                &label,
                || Ok(unet.forward(&latents, &timesteps, &context, added.as_ref())?), // [B, h, w, 4]
                |out| Ok(out.to_vec_f32()?),
            )?;
            Ok(Run { times, output, load_secs, note: None })
        }
        Part::Vae => {
            let t = Instant::now();
            let vae = {
                let ckpt = Checkpoint::open(root)?;
                Vae::load(&ckpt, precision.kiln(), Device::Cpu)?
            };
            let load_secs = t.elapsed().as_secs_f64();
            eprintln!("{label}: loaded the VAE in {load_secs:.1} s");
            // kiln upcasts an f16 request on a `force_upcast` VAE (SDXL's) to f32 on the CPU.
            let note = (vae.dtype() != precision.kiln()).then(|| {
                format!("kiln computed {} {precision} in {} (force_upcast VAE)", case.name, vae.dtype())
            });
            let (times, output) = time_calls(
                plan,
                &label,
                || Ok(vae.decode(&latents)?), // [1, 8h, 8w, 3]
                |out| Ok(out.to_vec_f32()?),
            )?;
            Ok(Run { times, output, load_secs, note })
        }
    }
}
