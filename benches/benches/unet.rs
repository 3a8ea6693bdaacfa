//! One full-size UNet call on the CPU in f32: SD 1.5 (64×64 latent, 77 context tokens) and
//! SDXL base (128×128 latent, 77 tokens, added conditioning), batch 1, random weights.
//!
//! Run: `cargo bench -p kiln-benches --bench unet -- sd15` (or `sdxl`, or both; `--iters N`
//! calls per model, default 2: the first call also faults in fresh activation memory).
//! SDXL needs ~16 GB: 10.3 GB of f32 weights plus the 5.1 GB F16 file mapped while loading.
//!
//! The weights are random (a fixed-seed SplitMix64; matrices and convs uniform with variance
//! 1/fan_in, norm scales 1 ± 0.1, biases ± 0.1), written with the published file's tensor
//! names, shapes and dtypes (`fixtures/manifests/{sd15,sdxl_base}.single_file.json`, UNet
//! tensors only) into a temporary directory, then opened with `Checkpoint::open`: the sparse
//! zero files of `Manifest::materialize` would time a model of zeros. Prints the time of each
//! call and the peak resident memory (`VmHWM` of /proc/self/status).

mod model_common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_pipeline::models::unet::{AddedConditioning, UNet};
use kiln_runtime::checkpoint::Checkpoint;
use kiln_runtime::checkpoint::manifest::Manifest;
use kiln_runtime::{DType, Device};

use model_common::{Error, memory_gib, random_tensor, write_random_unet};

/// A benchmarked model: its manifest, latent size and context width.
struct ModelCase {
    name: &'static str,
    manifest: &'static str,
    latent: usize,
    context_dim: usize,
    /// SDXL's pooled width and time ids.
    added: Option<(usize, [f32; 6])>,
}

const MODELS: [ModelCase; 2] = [
    ModelCase { name: "sd15", manifest: "sd15.single_file.json", latent: 64, context_dim: 768, added: None },
    ModelCase {
        name: "sdxl",
        manifest: "sdxl_base.single_file.json",
        latent: 128,
        context_dim: 2048,
        added: Some((1280, [1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0])),
    },
];

fn run(case: &ModelCase, iters: usize, dir: &Path) -> Result<(), Error> {
    let manifests = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/manifests"));
    let manifest = Manifest::read(&manifests.join(case.manifest))?;
    let path = dir.join(format!("{}_unet_random.safetensors", case.name));
    let t = Instant::now();
    let bytes = write_random_unet(&manifest, &path)?;
    println!(
        "{}: wrote {:.2} GB of random UNet weights in {:.1} s",
        case.name,
        bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let unet = {
        let ckpt = Checkpoint::open(&path)?;
        UNet::load(&ckpt, DType::F32, Device::Cpu)?
    };
    std::fs::remove_file(&path)?;
    let (hwm, rss) = memory_gib();
    println!(
        "{}: loaded as f32 in {:.1} s; resident {rss:.2} GiB (peak so far {hwm:.2} GiB)",
        case.name,
        t.elapsed().as_secs_f64()
    );

    let s = case.latent;
    let latents = random_tensor(&[1, s, s, 4], 1)?; // [B, H, W, 4]
    let context = random_tensor(&[1, 77, case.context_dim], 2)?; // [B, 77, C]
    let added = match case.added {
        Some((pooled, ids)) => {
            Some(AddedConditioning { text_embeds: random_tensor(&[1, pooled], 3)?, time_ids: ids.to_vec() })
        }
        None => None,
    };
    let mut times = Vec::new();
    for i in 0..iters {
        let t = Instant::now();
        let out = unet.forward(&latents, &[500.0], &context, added.as_ref())?;
        let secs = t.elapsed().as_secs_f64();
        let v = out.to_vec_f32()?;
        let finite = v.iter().all(|x| x.is_finite());
        let rms = (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        println!(
            "{}: call {} of {iters}: {secs:.2} s (output {:?}, finite {finite}, rms {rms:.3})",
            case.name,
            i + 1,
            out.dims()
        );
        times.push(secs);
    }
    let (hwm, rss) = memory_gib();
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "RESULT {}: one UNet call (batch 1, {s}x{s} latent, 77 tokens, f32 CPU): best {best:.2} s of {iters}; \
         peak RSS (VmHWM) {hwm:.2} GiB, RSS after {rss:.2} GiB",
        case.name
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut iters = 2;
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--iters" => iters = it.next().and_then(|n| n.parse().ok()).unwrap_or(iters),
            name => {
                if let Some(case) = MODELS.iter().find(|m| m.name == name) {
                    chosen.push(case);
                }
                // Anything else (cargo's `--bench`) is ignored.
            }
        }
    }
    if chosen.is_empty() {
        chosen.push(&MODELS[0]);
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("unet bench: no temporary directory: {e}");
            std::process::exit(1);
        }
    };
    println!("unet bench: {} threads available", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let mut failed = false;
    for case in chosen {
        if let Err(e) = run(case, iters, dir.path()) {
            eprintln!("{}: failed: {e}", case.name);
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
