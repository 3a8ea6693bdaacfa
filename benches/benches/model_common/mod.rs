//! Helpers of the model benches (`unet`, `lora`, `controlnet`): random full-size weights written with the
//! published files' names and shapes, and the process's memory use.

#![allow(dead_code)] // each bench uses its own subset

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use kiln_runtime::checkpoint::manifest::Manifest;
use kiln_runtime::checkpoint::{Dtype, write};
use kiln_runtime::{DType, Device, Tensor};

/// The benches' error type.
pub type Error = Box<dyn std::error::Error>;

/// The single file's UNet key prefix.
pub const UNET_PREFIX: &str = "model.diffusion_model.";

/// The fixed-seed generator of the random weights and inputs.
pub use kiln_runtime::random::SplitMix64 as SplitMix;

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
pub fn write_random_unet(manifest: &Manifest, path: &Path) -> Result<u64, Error> {
    write_random(manifest, |name| name.starts_with(UNET_PREFIX), path)
}

/// Writes the tensors of `manifest`'s first file that `keep` selects, with random values, to
/// `path`; returns the bytes.
pub fn write_random(manifest: &Manifest, keep: impl Fn(&str) -> bool, path: &Path) -> Result<u64, Error> {
    let file = manifest.files.first().ok_or("manifest without files")?;
    let tensors: Vec<(&str, Dtype, &[usize])> = file
        .tensors
        .iter()
        .filter(|t| keep(&t.name))
        .map(|t| Ok((t.name.as_str(), t.safetensors_dtype().ok_or("unknown dtype")?, t.shape.as_slice())))
        .collect::<Result<_, Error>>()?;
    let (head, data_len) = write::header(&tensors).ok_or("tensor sizes overflow")?;
    let mut out = BufWriter::with_capacity(1 << 22, File::create(path)?);
    out.write_all(&head)?;
    for (i, &(name, dtype, shape)) in tensors.iter().enumerate() {
        let mut rng = SplitMix::new(0x6b69_6c6e ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
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
pub fn memory_gib() -> (f64, f64) {
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

/// A random activation of `shape` (roughly unit variance), f32 on the CPU.
pub fn random_tensor(shape: &[usize], seed: u64) -> Result<Tensor, Error> {
    let mut rng = SplitMix::new(seed);
    let n = shape.iter().product();
    // Roughly unit variance (uniform on [-√3, √3)), as latents and text states are.
    let data = (0..n).map(|_| rng.uniform() * 3f32.sqrt()).collect();
    Ok(Tensor::from_f32(data, shape, DType::F32, Device::Cpu)?)
}
