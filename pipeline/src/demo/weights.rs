//! The demo model's files as bytes: its configs (embedded verbatim) and its weight files, drawn
//! deterministically from the embedded tensor manifest.
//!
//! Each tensor has its own generator, seeded from a hash of its name, so the bytes depend on
//! nothing but the name and shape: the same on every machine and run. Every draw takes at least
//! 16 values from torch's 16-lane Box-Muller path (portable f32 code with fused multiply-adds,
//! no platform libm), keeping only the first ones for small tensors. Scales keep activations
//! O(1), as `tools/make_tiny_models.py` does: weights normal / sqrt(fan_in), norm scales
//! 1 + 0.1·N, biases 0.1·N, token and position tables 0.5·N. Stored as F16.

use half::f16;
use kiln_runtime::checkpoint::Dtype;
use kiln_runtime::checkpoint::write;
use serde_json::Map;

use crate::rng::TorchGenerator;

/// `component.name shape` per line (made by `tools/make_demo_assets.py`).
const MANIFEST: &str = include_str!("../../assets/demo_sdxl/manifest.txt");

/// The configs, by path inside the demo folder.
const CONFIGS: [(&str, &str); 6] = [
    ("model_index.json", include_str!("../../assets/demo_sdxl/model_index.json")),
    (
        "scheduler/scheduler_config.json",
        include_str!("../../assets/demo_sdxl/scheduler/scheduler_config.json"),
    ),
    ("unet/config.json", include_str!("../../assets/demo_sdxl/unet/config.json")),
    ("vae/config.json", include_str!("../../assets/demo_sdxl/vae/config.json")),
    ("text_encoder/config.json", include_str!("../../assets/demo_sdxl/text_encoder/config.json")),
    ("text_encoder_2/config.json", include_str!("../../assets/demo_sdxl/text_encoder_2/config.json")),
];

/// The weight file of each component, by path inside the demo folder.
const WEIGHT_FILES: [(&str, &str); 4] = [
    ("unet", "unet/diffusion_pytorch_model.safetensors"),
    ("vae", "vae/diffusion_pytorch_model.safetensors"),
    ("text_encoder", "text_encoder/model.safetensors"),
    ("text_encoder_2", "text_encoder_2/model.safetensors"),
];

/// Changes whenever the drawn bytes would change (it also seeds every tensor).
pub(super) const WEIGHTS_VERSION: &str = "kiln-demo-sdxl-v2";

/// torch's Box-Muller chunk: draws shorter than this would take the libm double path.
const MIN_DRAW: usize = 16;

/// One tensor of the manifest.
struct TensorSpec<'a> {
    /// Name inside its component's file (`down_blocks.0.resnets.0.conv1.weight`).
    name: &'a str,
    shape: Vec<usize>,
}

/// The tensors of `component`, in manifest (sorted) order.
fn tensors(component: &str) -> Vec<TensorSpec<'static>> {
    MANIFEST
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (full, shape) = line.split_once(' ')?;
            let name = full.strip_prefix(component)?.strip_prefix('.')?;
            // A tensor of another component whose prefix starts the same (`text_encoder_2.` vs
            // `text_encoder.`) fails the strip above; the manifest is generated, so its shapes parse.
            let shape = shape.split(',').map(|d| d.parse().expect("manifest dims are integers")).collect();
            Some(TensorSpec { name, shape })
        })
        .collect()
}

/// FNV-1a, 64 bits: a stable hash (std's hasher may change between Rust releases).
pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The tensor's values, before rounding to f16.
fn draw(component: &str, spec: &TensorSpec) -> Vec<f32> {
    let hash = fnv1a64(format!("{WEIGHTS_VERSION}/{component}.{}", spec.name).as_bytes());
    // torch seeds MT19937 with the low 32 bits: fold the high half in.
    let mut generator = TorchGenerator::new((hash ^ (hash >> 32)) & 0xffff_ffff);
    let numel: usize = spec.shape.iter().product();
    let mut z = generator.randn_nchw(&[numel.max(MIN_DRAW)]);
    z.truncate(numel);
    let leaf = spec.name.rsplit('.').next().unwrap_or(spec.name);
    let (scale, shift) = if leaf == "bias" || spec.name.ends_with("_bias") {
        (0.1, 0.0)
    } else if spec.shape.len() == 1 {
        (0.1, 1.0) // norm scales
    } else if spec.name.contains("embedding") && spec.shape.len() == 2 && !spec.name.contains("linear") {
        (0.5, 0.0) // token and position tables
    } else {
        let fan_in: usize = spec.shape[1..].iter().product(); // [out, in, (kh, kw)]
        (1.0 / (fan_in.max(1) as f32).sqrt(), 0.0)
    };
    z.iter().map(|v| v * scale + shift).collect()
}

/// The safetensors header of `specs` laid out back to back as F16, stamped with the weights'
/// version, and the data length.
fn header(specs: &[TensorSpec]) -> (Vec<u8>, usize) {
    let tensors: Vec<_> = specs.iter().map(|s| (s.name, Dtype::F16, s.shape.as_slice())).collect();
    let mut metadata = Map::new();
    metadata.insert("format".into(), "pt".into());
    metadata.insert("kiln".into(), WEIGHTS_VERSION.into());
    let (header, data_len) =
        write::header_with_metadata(&tensors, Some(&metadata)).expect("the demo's tensors are small");
    (header, data_len as usize)
}

/// A weight file as the demo folder holds it.
pub(super) struct WeightFile {
    /// Path inside the folder.
    pub path: &'static str,
    /// The exact header bytes.
    pub header: Vec<u8>,
    /// The whole file's length.
    pub len: u64,
    component: &'static str,
    specs: Vec<TensorSpec<'static>>,
}

impl WeightFile {
    /// The file's bytes: header, then each tensor's f16 values, little-endian.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len as usize);
        out.extend_from_slice(&self.header);
        for spec in &self.specs {
            for v in draw(self.component, spec) {
                out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
            }
        }
        out
    }
}

/// The four weight files (header and length known without drawing anything).
pub(super) fn weight_files() -> Vec<WeightFile> {
    WEIGHT_FILES
        .iter()
        .map(|&(component, path)| {
            let specs = tensors(component);
            let (header, data_len) = header(&specs);
            let len = (header.len() + data_len) as u64;
            WeightFile { path, header, len, component, specs }
        })
        .collect()
}

/// The config files: (path inside the folder, contents).
pub(super) fn config_files() -> &'static [(&'static str, &'static str)] {
    &CONFIGS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_splits_into_components_without_overlap() {
        let counts: Vec<usize> = WEIGHT_FILES.iter().map(|(c, _)| tensors(c).len()).collect();
        let listed = MANIFEST.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), listed);
    }

    #[test]
    fn small_tensors_draw_from_the_chunked_path() {
        let spec = TensorSpec { name: "conv_out.bias", shape: vec![3] };
        let values = draw("vae", &spec);
        assert_eq!(values.len(), 3);
        assert!(values.iter().all(|v| v.is_finite() && v.abs() < 1.0) && values[0] != values[1]);
    }
}
