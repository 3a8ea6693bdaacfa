//! What a ControlNet and an IP-Adapter add to a denoising step on the CPU: the full-size SDXL
//! base UNet, the full-size SDXL canny ControlNet, and the SDXL IP-Adapter for ViT-H with the
//! ViT-H/14 image encoder, random weights, all in bf16, at 1024² (128x128 latent, 77 tokens,
//! added conditioning), batch 1 (one guidance half; the cost per row is what a batch multiplies).
//!
//! Run: `cargo bench -p kiln-benches --bench guidance -- --iters 2`. Per iteration, in turn: a
//! plain UNet call; the ControlNet call and the UNet call with its residuals (the controlled
//! step); the UNet call with the adapter's image attention in every cross-attention (the
//! adapted step) — so that load on a shared machine falls on all alike. The image encoder and
//! the projection run once per image, not per step: timed once. Prints each time, the medians,
//! and the extra cost of each step over a plain one. Needs ~12 GB.
//!
//! Weights: `fixtures/manifests/{sdxl_base, controlnet_sdxl_canny, ip_adapter_sdxl_vit_h,
//! image_encoder_vit_h}.single_file.json`, random values as `model_common` writes them.

mod model_common;

use std::path::PathBuf;
use std::time::Instant;

use kiln_pipeline::models::clip::vision::ClipVisionModel;
use kiln_pipeline::models::ip_adapter::IpAdapter;
use kiln_pipeline::models::unet::{AddedConditioning, ControlNet, Extras, IpCall, UNet};
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
    let adapter_path = dir.path().join("ip-adapter.safetensors");
    write_random(
        &Manifest::read(&manifests.join("ip_adapter_sdxl_vit_h.single_file.json"))?,
        |_| true,
        &adapter_path,
    )?;
    let encoder_manifest = Manifest::read(&manifests.join("image_encoder_vit_h.single_file.json"))?;
    let encoder_dir = dir.path().join("image_encoder");
    std::fs::create_dir_all(&encoder_dir)?;
    write_random(&encoder_manifest, |_| true, &encoder_dir.join("model.safetensors"))?;
    let config = encoder_manifest.configs["config.json"].to_string();
    std::fs::write(encoder_dir.join("config.json"), config)?;
    let dtype = DType::BF16;
    let unet = UNet::load(&Checkpoint::open(&unet_path)?, dtype, Device::Cpu)?;
    let net = ControlNet::load(&Checkpoint::open_controlnet(&net_path, None)?, dtype, Device::Cpu)?;
    let adapter = IpAdapter::load(&adapter_path, dtype, Device::Cpu)?;
    let encoder = ClipVisionModel::load(&Checkpoint::open_image_encoder(&encoder_dir)?, dtype, Device::Cpu)?;
    drop(dir);
    let (hwm, rss) = memory_gib();
    println!(
        "loaded UNet, ControlNet, IP-Adapter and image encoder as bf16: resident {rss:.2} GiB (peak {hwm:.2} GiB)"
    );
    // The adapter's per-image work: the image encoder and the projection to 4 tokens.
    let t = Instant::now();
    let embeds = encoder.image_embeds(&random_tensor(&[1, 224, 224, 3], 5)?)?;
    let tokens = adapter.tokens(&embeds)?;
    let per_image = t.elapsed().as_secs_f64();
    let scales = vec![vec![0.6f32]; adapter.layers()];
    let ip = IpCall::new(&adapter, &tokens, &scales, None, (128, 128), 3)?;
    println!("image encoder + projection, once per image: {per_image:.2} s");

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
    let (mut plain, mut control, mut controlled, mut adapted) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
        let t = Instant::now();
        let out = unet.forward_with(
            &latents,
            &[500.0],
            &context,
            Some(&added),
            Extras { control: None, ip: Some(&ip) },
        )?;
        adapted.push(t.elapsed().as_secs_f64());
        check(&out, "the adapted UNet call")?;
        println!(
            "iteration {} of {iters}: UNet {:.2} s; ControlNet {:.2} s + UNet with residuals {:.2} s; UNet with \
             IP-Adapter {:.2} s",
            i + 1,
            plain[i],
            control[i],
            controlled[i],
            adapted[i]
        );
    }
    let steps: Vec<f64> = control.iter().zip(&controlled).map(|(a, b)| a + b).collect();
    let spread = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{lo:.2}..{hi:.2}")
    };
    let (p, c, s) = (median(&mut plain.clone()), median(&mut control.clone()), median(&mut steps.clone()));
    let a = median(&mut adapted.clone());
    let (hwm, _) = memory_gib();
    println!(
        "RESULT SDXL 1024², batch 1, bf16 CPU, median of {iters}: plain UNet step {p:.2} s ({}); ControlNet {c:.2} s \
         ({}); controlled step {s:.2} s ({}): +{:.0}% per step; adapted step {a:.2} s ({}): +{:.1}% per step, plus \
         {per_image:.2} s per image; peak RSS {hwm:.2} GiB",
        spread(&plain),
        spread(&control),
        spread(&steps),
        (s / p - 1.0) * 100.0,
        spread(&adapted),
        (a / p - 1.0) * 100.0
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
        "guidance bench: {} threads available",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if let Err(e) = run(iters) {
        eprintln!("guidance bench: failed: {e}");
        std::process::exit(1);
    }
}
