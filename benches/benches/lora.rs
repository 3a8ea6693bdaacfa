//! Merging a rank-128 LoRA into the full-size SDXL base UNet on the CPU, and restoring it.
//!
//! Run: `cargo bench -p kiln-benches --bench lora -- [--dtype f16|f32] [--iters N]
//! [--no-unet-call]` (default f16, 3 merges and restores, then one UNet call on a 1024×1024
//! latent with the same weights as the peer to compare with). Needs ~8 GB in f16 (the UNet's 4.8 GiB, the patched weights'
//! kept originals, the LoRA file mapped), ~15 GB in f32.
//!
//! The UNet's weights are random, written with the published single file's names, shapes and
//! dtypes (`fixtures/manifests/sdxl_base.single_file.json`) as the `unet` bench does. The LoRA is
//! random too (uniform factors, alpha 64, stored f16), in kohya's layout (`lora_unet_…`,
//! `lora_down` / `lora_up` / `alpha`) over every linear of every transformer (attention
//! q/k/v/out, feed-forward, proj_in / proj_out): what SDXL LoRA trainers target. Each merge starts
//! from the base weights (the previous one restored), and prints its time; the summary gives the
//! median and the spread, and the GFLOP/s of the update products (2·out·rank·in per module).

mod model_common;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_pipeline::lora::{LoraFile, ModelSide, TargetIndex, WeightedLora, merge, restore};
use kiln_pipeline::models::patch::WeightLayout;
use kiln_pipeline::models::unet::{AddedConditioning, UNet};
use kiln_runtime::DType;
use kiln_runtime::Device;
use kiln_runtime::checkpoint::manifest::Manifest;
use kiln_runtime::checkpoint::names::UnetBlocks;
use kiln_runtime::checkpoint::{Checkpoint, Dtype, write};
use model_common::{Error, SplitMix, memory_gib, random_tensor, write_random_unet};

const RANK: usize = 128;

/// Writes a kohya LoRA of `RANK` over `modules` (`(module path, out, in)`); returns the update
/// FLOPs one merge computes.
fn write_random_lora(modules: &[(String, usize, usize)], path: &Path) -> Result<u64, Error> {
    let mut tensors: Vec<(String, Dtype, Vec<usize>)> = Vec::new();
    let mut flops = 0u64;
    for (module, out, inp) in modules {
        let key = format!("lora_unet_{}", module.replace('.', "_"));
        tensors.push((format!("{key}.alpha"), Dtype::F16, vec![]));
        tensors.push((format!("{key}.lora_down.weight"), Dtype::F16, vec![RANK, *inp]));
        tensors.push((format!("{key}.lora_up.weight"), Dtype::F16, vec![*out, RANK]));
        flops += 2 * (*out * RANK * *inp) as u64;
    }
    let table: Vec<(&str, Dtype, &[usize])> =
        tensors.iter().map(|(n, d, s)| (n.as_str(), *d, s.as_slice())).collect();
    let (head, _) = write::header(&table).ok_or("tensor sizes overflow")?;
    let mut out = BufWriter::with_capacity(1 << 22, File::create(path)?);
    out.write_all(&head)?;
    let mut rng = SplitMix::new(0x6c6f_7261);
    for (name, _, shape) in &tensors {
        let n: usize = shape.iter().product();
        let (center, spread) = if name.ends_with(".alpha") { (64.0, 0.0) } else { (0.0, 0.02) };
        for _ in 0..n {
            out.write_all(&half::f16::from_f32(center + spread * rng.uniform()).to_le_bytes())?;
        }
    }
    out.flush()?;
    Ok(flops)
}

fn median_and_spread(times: &mut [f64]) -> (f64, f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

/// One UNet call on a 128×128 latent (1024×1024 images) with 77 tokens: the peer a merge is
/// compared with.
fn unet_call(unet: &UNet) -> Result<f64, Error> {
    let latents = random_tensor(&[1, 128, 128, 4], 1)?; // [B, H, W, 4]
    let context = random_tensor(&[1, 77, 2048], 2)?; // [B, 77, C]
    let added = AddedConditioning {
        text_embeds: random_tensor(&[1, 1280], 3)?,
        time_ids: vec![1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0],
    };
    let t = Instant::now();
    unet.forward(&latents, &[500.0], &context, Some(&added))?;
    Ok(t.elapsed().as_secs_f64())
}

fn run(dtype: DType, iters: usize, peer: bool, dir: &Path) -> Result<(), Error> {
    let manifests = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/manifests"));
    let manifest = Manifest::read(&manifests.join("sdxl_base.single_file.json"))?;
    let unet_path = dir.join("sdxl_unet_random.safetensors");
    write_random_unet(&manifest, &unet_path)?;
    let t = Instant::now();
    let unet = UNet::load(&Checkpoint::open(&unet_path)?, dtype, Device::Cpu)?;
    std::fs::remove_file(&unet_path)?;
    println!("lora: SDXL UNet loaded as {dtype:?} in {:.1} s", t.elapsed().as_secs_f64());

    let table = unet.patchable();
    let modules: Vec<(String, usize, usize)> = table
        .iter()
        .filter(|(name, w)| name.contains(".attentions.") && w.layout() == WeightLayout::Linear)
        .filter_map(|(name, w)| {
            let shape = w.checkpoint_shape();
            let path = name.strip_prefix("unet.")?.strip_suffix(".weight")?.to_owned();
            Some((path, shape[0], shape[1]))
        })
        .collect();
    let lora_path = dir.join("lora_r128.safetensors");
    let flops = write_random_lora(&modules, &lora_path)?;
    let lora = LoraFile::open(&lora_path)?;
    let lora_bytes = std::fs::metadata(&lora_path)?.len();
    println!(
        "lora: rank {RANK} over {} linears, {:.2} GB file, {:.1} GFLOP of update products per merge",
        modules.len(),
        lora_bytes as f64 / 1e9,
        flops as f64 / 1e9
    );

    let c = unet.config();
    let index =
        TargetIndex::new(table, UnetBlocks { levels: c.levels(), layers_per_block: c.layers_per_block });
    let side = ModelSide {
        table,
        index: &index,
        family: "SDXL",
        context_width: c.cross_attention_dim,
        has_text_encoder_2: true,
    };
    let set = [WeightedLora { file: &lora, weight: 0.8 }];
    let (mut merges, mut restores) = (Vec::new(), Vec::new());
    for i in 0..iters {
        let t = Instant::now();
        let (originals, reports) = merge(side, &set)?;
        let merge_secs = t.elapsed().as_secs_f64();
        assert_eq!(reports[0].applied, modules.len());
        let patched = originals.len();
        let t = Instant::now();
        restore(table, originals);
        let restore_secs = t.elapsed().as_secs_f64();
        let (hwm, rss) = memory_gib();
        println!(
            "lora: {} of {iters}: merge {merge_secs:.2} s ({patched} weights, {:.1} GFLOP/s), restore {:.3} ms; \
             RSS {rss:.2} GiB, peak {hwm:.2} GiB",
            i + 1,
            flops as f64 / merge_secs / 1e9,
            restore_secs * 1e3
        );
        merges.push(merge_secs);
        restores.push(restore_secs);
    }
    if peer {
        let secs = unet_call(&unet)?;
        println!(
            "RESULT lora: peer: one UNet call (batch 1, 128x128 latent, 77 tokens, {dtype:?} CPU) took {secs:.2} s"
        );
    }
    let (m, m_lo, m_hi) = median_and_spread(&mut merges);
    let (r, r_lo, r_hi) = median_and_spread(&mut restores);
    println!(
        "RESULT lora: rank-{RANK} SDXL LoRA on the full-size UNet, {dtype:?} CPU: merge median {m:.2} s \
         (range {m_lo:.2} to {m_hi:.2}, {iters} runs), restore median {:.3} ms (range {:.3} to {:.3})",
        r * 1e3,
        r_lo * 1e3,
        r_hi * 1e3
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut dtype, mut iters, mut peer) = (DType::F16, 3, true);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--iters" => iters = it.next().and_then(|n| n.parse().ok()).unwrap_or(iters),
            "--dtype" => {
                dtype = match it.next().map(String::as_str) {
                    Some("f32") => DType::F32,
                    _ => DType::F16,
                }
            }
            "--no-unet-call" => peer = false,
            _ => {} // cargo's `--bench`
        }
    }
    let result =
        tempfile::tempdir().map_err(Error::from).and_then(|dir| run(dtype, iters.max(1), peer, dir.path()));
    if let Err(e) = result {
        eprintln!("lora bench: failed: {e}");
        std::process::exit(1);
    }
}
