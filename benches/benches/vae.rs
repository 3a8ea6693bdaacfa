//! One full-size VAE decode on the CPU in f32: SD 1.5 (64×64 latents -> 512×512) and SDXL
//! (128×128 -> 1024×1024), whole and in 512-pixel tiles, with random weights.
//!
//! Run: `cargo bench -p kiln-benches --bench vae` (all cases), or name cases:
//! `cargo bench -p kiln-benches --bench vae -- sd15 sdxl sdxl-tiled sd15-tiled`.
//!
//! The checkpoint is the published single file's layout (`fixtures/manifests/*.single_file.json`)
//! written to a temporary folder as a sparse file: every tensor reads as zeros except the VAE's,
//! which are random (stored as F32), scaled so activations stay O(1). Each case decodes once
//! (these take seconds to minutes on a small machine) and prints the seconds per decode and the
//! peak resident memory (`VmHWM`) during it, reset before the case through
//! `/proc/self/clear_refs`, next to the resident memory before it (weights and latents).

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_pipeline::models::vae::{Tiling, Vae};
use kiln_runtime::checkpoint::manifest::Manifest;
use kiln_runtime::checkpoint::write::{byte_len, header, write_sparse_safetensors};
use kiln_runtime::checkpoint::{Checkpoint, Dtype};
use kiln_runtime::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/manifests");
const VAE_PREFIX: &str = "first_stage_model.";

/// Random values for VAE tensor `name` of `shape`: norm scales `1 + 0.1u`, biases `0.1u`, other
/// weights uniform with variance `1 / fan_in`.
fn random_values(name: &str, shape: &[usize], rng: &mut StdRng) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let (centre, half_width) = if shape.len() == 1 {
        (if name.ends_with("weight") { 1.0 } else { 0.0 }, 0.1)
    } else {
        let fan_in: usize = shape[1..].iter().product();
        (0.0, (3.0 / fan_in as f32).sqrt())
    };
    (0..n).map(|_| centre + half_width * rng.random_range(-1.0f32..1.0)).collect()
}

/// Writes `manifest`'s single file under `dir`: sparse zeros, then the VAE's tensors as random
/// F32 written in place. Returns the file's path.
fn write_checkpoint(manifest: &Manifest, dir: &Path) -> PathBuf {
    let file = &manifest.files[0];
    let specs: Vec<(&str, Dtype, &[usize])> = file
        .tensors
        .iter()
        .map(|t| {
            let dtype = if t.name.starts_with(VAE_PREFIX) {
                Dtype::F32
            } else {
                t.safetensors_dtype().expect("manifest dtype")
            };
            (t.name.as_str(), dtype, t.shape.as_slice())
        })
        .collect();
    let path = dir.join(&file.path);
    write_sparse_safetensors(&path, &specs).expect("sparse checkpoint");
    let (head, _) = header(&specs).expect("header");
    let mut out = OpenOptions::new().write(true).open(&path).expect("reopen");
    let mut rng = StdRng::seed_from_u64(4);
    let mut offset = head.len() as u64;
    for &(name, dtype, shape) in &specs {
        if name.starts_with(VAE_PREFIX) {
            let bytes: Vec<u8> =
                random_values(name, shape, &mut rng).iter().flat_map(|v| v.to_le_bytes()).collect();
            out.seek(SeekFrom::Start(offset)).expect("seek");
            out.write_all(&bytes).expect("write");
        }
        offset += byte_len(dtype, shape).expect("size");
    }
    out.flush().expect("flush");
    path
}

/// A `/proc/self/status` field in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?.trim_start_matches(':').trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .map_or(f64::NAN, |kb: f64| kb / 1024.0)
}

/// Resets `VmHWM` to the current resident size (Linux >= 4.0).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak RSS ({e}); VmHWM is the process's peak so far");
    }
}

struct Case {
    name: &'static str,
    manifest: &'static str,
    latent: usize,
    tiling: Option<Tiling>,
}

/// SD 1.5's default tiles (`sample_size` 512): 64 latents, 512 pixels, overlap 0.25.
const TILES_512: Tiling = Tiling { latent_tile: 64, sample_tile: 512, overlap_factor: 0.25 };

const CASES: [Case; 4] = [
    Case { name: "sd15", manifest: "sd15", latent: 64, tiling: None },
    Case { name: "sdxl", manifest: "sdxl_base", latent: 128, tiling: None },
    Case { name: "sdxl-tiled", manifest: "sdxl_base", latent: 128, tiling: Some(TILES_512) },
    Case {
        name: "sd15-tiled",
        manifest: "sd15",
        latent: 64,
        tiling: Some(Tiling { latent_tile: 32, sample_tile: 256, overlap_factor: 0.25 }),
    },
];

fn run(case: &Case, dir: &Path) {
    let manifest = Manifest::read(&Path::new(MANIFESTS).join(format!("{}.single_file.json", case.manifest)))
        .expect("manifest");
    let path = write_checkpoint(&manifest, dir);
    let ckpt = Checkpoint::open(&path).expect("open");
    let mut vae = Vae::load(&ckpt, DType::F32, Device::Cpu).expect("load");
    vae.set_tiling(case.tiling);
    let n = case.latent * case.latent * 4;
    let mut rng = StdRng::seed_from_u64(5);
    let values = (0..n).map(|_| rng.random_range(-1.0f32..1.0) * 1.7).collect();
    let latents = Tensor::from_f32(values, &[1, case.latent, case.latent, 4], DType::F32, Device::Cpu)
        .expect("latents");
    reset_peak_rss();
    let before = status_mib("VmRSS");
    let start = Instant::now();
    let image = vae.decode(&latents).expect("decode");
    let secs = start.elapsed().as_secs_f64();
    let peak = status_mib("VmHWM");
    let finite = image.to_vec_f32().expect("host").iter().all(|v| v.is_finite());
    let tiles =
        case.tiling.map_or("whole".to_string(), |t| format!("tiles {}/{} px", t.latent_tile, t.sample_tile));
    println!(
        "vae decode {} {:?} -> {:?} f32 cpu ({tiles}): {secs:.2} s/decode, peak RSS {peak:.0} MiB \
         (RSS before {before:.0} MiB, finite: {finite})",
        case.name,
        latents.dims(),
        image.dims()
    );
    std::fs::remove_file(&path).ok();
}

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    for case in CASES.iter().filter(|c| wanted.is_empty() || wanted.iter().any(|w| w == c.name)) {
        run(case, dir.path());
    }
}
