//! What a ControlNet adds to a denoising step on the CPU: the full-size SDXL base UNet and the
//! full-size SDXL canny ControlNet with random weights, both in bf16, at 1024² (128x128 latent,
//! 77 tokens, added conditioning), batch 1 (one guidance half; the cost per row is what a batch
//! multiplies).
//!
//! Run: `cargo bench -p kiln-benches --bench controlnet -- --iters 2`. Per iteration, in turn:
//! a plain UNet call, then the ControlNet call and the UNet call with its residuals (the
//! controlled step), so that load on a shared machine falls on both alike. Prints each time, the
//! medians, and the extra cost of a controlled step over a plain one. Needs ~10 GB: 5.1 GB of
//! UNet and 2.5 GB of ControlNet weights in bf16, plus the F16 files mapped while loading.
//!
//! Weights: `fixtures/manifests/{sdxl_base.single_file, controlnet_sdxl_canny.single_file}.json`,
//! random values as `model_common` writes them.

mod model_common;

use std::path::PathBuf;
use std::time::Instant;

use kiln_pipeline::models::unet::{AddedConditioning, ControlNet, Extras, UNet};
use kiln_runtime::checkpoint::Checkpoint;
use kiln_runtime::checkpoint::manifest::Manifest;
use kiln_runtime::{DType, Device, Tensor};

use model_common::{Error, memory_gib, random_tensor, write_random, write_random_unet};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(iters: usize) -> Result<(), Error> {
    let manifests = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/manifests"));
    let dir = tempfile::tempdir()?;
    let unet_path = dir.path().join("unet.safetensors");
    let net_path = dir.path().join("controlnet.safetensors");
    write_random_unet(&Manifest::read(&manifests.join("sdxl_base.single_file.json"))?, &unet_path)?;
    write_random(
        &Manifest::read(&manifests.join("controlnet_sdxl_canny.single_file.json"))?,
        |_| true,
        &net_path,
    )?;
    let dtype = DType::BF16;
    let unet = UNet::load(&Checkpoint::open(&unet_path)?, dtype, Device::Cpu)?;
    let net = ControlNet::load(&Checkpoint::open_controlnet(&net_path, None)?, dtype, Device::Cpu)?;
    drop(dir);
    let (hwm, rss) = memory_gib();
    println!("loaded UNet and ControlNet as bf16: resident {rss:.2} GiB (peak {hwm:.2} GiB)");

    let latents = random_tensor(&[1, 128, 128, 4], 1)?;
    let context = random_tensor(&[1, 77, 2048], 2)?;
    let added = AddedConditioning {
        text_embeds: random_tensor(&[1, 1280], 3)?,
        time_ids: vec![1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0],
    };
    // A control image in [0, 1]: a Canny map is 0 or 1; random values cost the same.
    let hint = random_tensor(&[1, 1024, 1024, 3], 4)?.affine(0.25, 0.5)?;
    let check = |t: &Tensor, what: &str| -> Result<(), Error> {
        if t.to_vec_f32()?.iter().all(|x| x.is_finite()) {
            Ok(())
        } else {
            Err(format!("{what}: not finite").into())
        }
    };
    let (mut plain, mut control, mut controlled) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iters {
        let t = Instant::now();
        let out = unet.forward(&latents, &[500.0], &context, Some(&added))?;
        plain.push(t.elapsed().as_secs_f64());
        check(&out, "the plain UNet call")?;
        let t = Instant::now();
        let residuals = net.forward(&latents, &[500.0], &context, Some(&added), &hint, &[1.0])?;
        control.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let extras = Extras { control: Some(&residuals), ip: None };
        let out = unet.forward_with(&latents, &[500.0], &context, Some(&added), extras)?;
        controlled.push(t.elapsed().as_secs_f64());
        check(&out, "the controlled UNet call")?;
        println!(
            "iteration {} of {iters}: UNet {:.2} s; ControlNet {:.2} s + UNet with residuals {:.2} s",
            i + 1,
            plain[i],
            control[i],
            controlled[i]
        );
    }
    let steps: Vec<f64> = control.iter().zip(&controlled).map(|(a, b)| a + b).collect();
    let spread = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{lo:.2}..{hi:.2}")
    };
    let (p, c, s) = (median(&mut plain.clone()), median(&mut control.clone()), median(&mut steps.clone()));
    let (hwm, _) = memory_gib();
    println!(
        "RESULT SDXL 1024², batch 1, bf16 CPU, median of {iters}: plain UNet step {p:.2} s ({}); ControlNet {c:.2} s \
         ({}); controlled step {s:.2} s ({}): +{:.0}% per step; peak RSS {hwm:.2} GiB",
        spread(&plain),
        spread(&control),
        spread(&steps),
        (s / p - 1.0) * 100.0
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iters = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(2usize)
        .max(1);
    println!(
        "controlnet bench: {} threads available",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if let Err(e) = run(iters) {
        eprintln!("controlnet bench: failed: {e}");
        std::process::exit(1);
    }
}
