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

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_pipeline::models::unet::{AddedConditioning, UNet};
use kiln_runtime::checkpoint::manifest::Manifest;
use kiln_runtime::checkpoint::{Checkpoint, Dtype, write};
use kiln_runtime::{DType, Device, Tensor};

type Error = Box<dyn std::error::Error>;

const UNET_PREFIX: &str = "model.diffusion_model.";

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

/// SplitMix64: fast, fixed-seed, good enough for weights.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The value of element `i` of a tensor named `name` of `shape`.
fn scale_of(name: &str, shape: &[usize]) -> (f32, f32) {
    if shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product();
        (0.0, (3.0 / fan_in as f32).sqrt()) // uniform: variance 1 / fan_in
    } else if name.ends_with(".weight") {
        (1.0, 0.1) // norm scales
    } else {
        (0.0, 0.1) // biases
    }
}

/// Writes the UNet tensors of `manifest` with random values to `path`; returns the bytes.
fn write_random_unet(manifest: &Manifest, path: &Path) -> Result<u64, Error> {
    let file = manifest.files.first().ok_or("manifest without files")?;
    let tensors: Vec<(&str, Dtype, &[usize])> = file
        .tensors
        .iter()
        .filter(|t| t.name.starts_with(UNET_PREFIX))
        .map(|t| Ok((t.name.as_str(), t.safetensors_dtype().ok_or("unknown dtype")?, t.shape.as_slice())))
        .collect::<Result<_, Error>>()?;
    let (head, data_len) = write::header(&tensors).ok_or("tensor sizes overflow")?;
    let mut out = BufWriter::with_capacity(1 << 22, File::create(path)?);
    out.write_all(&head)?;
    for (i, &(name, dtype, shape)) in tensors.iter().enumerate() {
        let mut rng = SplitMix(0x6b69_6c6e ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let (center, spread) = scale_of(name, shape);
        let n: usize = shape.iter().product();
        let mut buf = Vec::with_capacity(n * 4);
        for _ in 0..n {
            let v = center + spread * rng.uniform();
            match dtype {
                Dtype::F32 => buf.extend_from_slice(&v.to_le_bytes()),
                Dtype::F16 => buf.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                Dtype::BF16 => buf.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                other => return Err(format!("{name}: unexpected dtype {other:?}").into()),
            }
        }
        out.write_all(&buf)?;
    }
    out.flush()?;
    Ok(head.len() as u64 + data_len)
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in GiB.
fn memory_gib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / (1024.0 * 1024.0))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn random_tensor(shape: &[usize], seed: u64) -> Result<Tensor, Error> {
    let mut rng = SplitMix(seed);
    let n = shape.iter().product();
    // Roughly unit variance (uniform on [-√3, √3)), as latents and text states are.
    let data = (0..n).map(|_| rng.uniform() * 3f32.sqrt()).collect();
    Ok(Tensor::from_f32(data, shape, DType::F32, Device::Cpu)?)
}

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
