//! Key manifests: the names, dtypes and shapes of every tensor of a real checkpoint, with its
//! configs and parameter counts, as `tools/` writes them into `fixtures/manifests/`. Tests and
//! the examples turn one back into a full-size checkpoint on disk ([`Manifest::materialize`]):
//! every file's header is real and its data region a sparse hole, so a 7 GB SDXL file costs a
//! few hundred kilobytes and no time.
//!
//! Schema: `{"family": "sdxl_base", "format": "single_file" | "diffusers", "files": [{"path":
//! "unet/diffusion_pytorch_model.safetensors", "tensors": [{"name", "dtype", "shape"}]}],
//! "configs": {"unet/config.json": {...}}, "parameters": {"unet": 2567463684, ...}}`.

use std::collections::BTreeMap;
use std::path::{Component as PathComponent, Path, PathBuf};

use super::error::CheckpointError;
use super::file::Dtype;
use super::write::{write_random_safetensors, write_sparse_safetensors};

/// A checkpoint's key manifest.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Manifest {
    /// The family id (`sd15`, `sdxl_base`, ...; see [`super::Family::id`]).
    pub family: String,
    /// `single_file` or `diffusers`.
    pub format: String,
    /// The safetensors files, with paths relative to the checkpoint (the folder, for diffusers).
    pub files: Vec<ManifestFile>,
    /// JSON side files by relative path (`unet/config.json`, `model_index.json`).
    #[serde(default)]
    pub configs: BTreeMap<String, serde_json::Value>,
    /// Parameters per component (`unet`, `vae`, `text_encoder`, `text_encoder_2`).
    #[serde(default)]
    pub parameters: BTreeMap<String, u64>,
}

/// What [`Manifest::materialize_random`] fills with random values.
pub struct RandomFill<'a> {
    /// The generator's seed: the same seed gives the same weights.
    pub seed: u64,
    /// Whether a tensor gets random values, by (file path in the manifest, tensor name); the
    /// others read as zeros.
    pub keep: &'a dyn Fn(&str, &str) -> bool,
    /// Stores every float tensor in this dtype instead of the manifest's (an f16 checkpoint
    /// from an f32 manifest).
    pub dtype: Option<Dtype>,
}

/// One file of a manifest.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ManifestFile {
    /// Path relative to the checkpoint.
    pub path: String,
    /// Its tensors.
    pub tensors: Vec<ManifestTensor>,
}

/// One tensor of a manifest.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ManifestTensor {
    /// Stored name.
    pub name: String,
    /// Stored dtype (`F16`, `float16`, `torch.float16`, ... are all accepted).
    pub dtype: String,
    /// Stored shape.
    pub shape: Vec<usize>,
}

impl ManifestTensor {
    /// The dtype as a safetensors [`Dtype`], if the spelling is known.
    pub fn safetensors_dtype(&self) -> Option<Dtype> {
        parse_dtype(&self.dtype)
    }
}

/// Reads a dtype spelled the safetensors way (`F16`), the torch way (`torch.float16`, `float16`)
/// or the short way (`fp16`, `f16`).
pub fn parse_dtype(s: &str) -> Option<Dtype> {
    let s = s.strip_prefix("torch.").unwrap_or(s);
    if let Ok(d) = serde_json::from_value::<Dtype>(serde_json::Value::String(s.to_string())) {
        return Some(d);
    }
    Some(match s.to_ascii_lowercase().as_str() {
        "float64" | "double" | "f64" | "fp64" => Dtype::F64,
        "float32" | "float" | "f32" | "fp32" => Dtype::F32,
        "float16" | "half" | "f16" | "fp16" => Dtype::F16,
        "bfloat16" | "bf16" => Dtype::BF16,
        "int64" | "long" | "i64" => Dtype::I64,
        "int32" | "int" | "i32" => Dtype::I32,
        "int16" | "i16" => Dtype::I16,
        "int8" | "i8" => Dtype::I8,
        "uint8" | "u8" => Dtype::U8,
        "bool" => Dtype::BOOL,
        _ => return None,
    })
}

impl Manifest {
    /// Reads a manifest file.
    pub fn read(path: &Path) -> Result<Manifest, CheckpointError> {
        let text = crate::files::read_regular_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CheckpointError::NotFound { path: path.into() },
            _ => CheckpointError::Io { path: path.into(), source },
        })?;
        serde_json::from_str(&text).map_err(|e| CheckpointError::Config {
            path: path.into(),
            reason: format!("is not a valid key manifest: {e}"),
        })
    }

    /// Every tensor of every file, as (file path, tensor).
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &ManifestTensor)> + '_ {
        self.files.iter().flat_map(|f| f.tensors.iter().map(move |t| (f.path.as_str(), t)))
    }

    /// Writes the checkpoint under `dir`: each file as a sparse full-size safetensors file, each
    /// config as JSON. Returns the path to open: the single file, or `dir` for a diffusers folder.
    pub fn materialize(&self, dir: &Path) -> Result<PathBuf, CheckpointError> {
        self.write_files(dir, None)
    }

    /// [`Manifest::materialize`] with fixed-seed random values in the float tensors that
    /// `fill.keep` selects (the rest stay sparse zeros): full-size weights to time or compare
    /// engines on, without a download. Writing costs the selected tensors' bytes of disk.
    pub fn materialize_random(&self, dir: &Path, fill: &RandomFill<'_>) -> Result<PathBuf, CheckpointError> {
        self.write_files(dir, Some(fill))
    }

    fn write_files(&self, dir: &Path, fill: Option<&RandomFill<'_>>) -> Result<PathBuf, CheckpointError> {
        let bad = |reason: String| CheckpointError::Config { path: dir.into(), reason };
        for (rel, value) in &self.configs {
            let path =
                dir.join(relative(rel).ok_or_else(|| bad(format!("config path `{rel}` is not relative")))?);
            create_parent(&path)?;
            let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
            std::fs::write(&path, text)
                .map_err(|source| CheckpointError::Io { path: path.clone(), source })?;
        }
        for file in &self.files {
            let path = dir.join(
                relative(&file.path)
                    .ok_or_else(|| bad(format!("file path `{}` is not relative", file.path)))?,
            );
            create_parent(&path)?;
            let specs = file
                .tensors
                .iter()
                .map(|t| {
                    let dtype = t
                        .safetensors_dtype()
                        .ok_or_else(|| bad(format!("tensor `{}` has unknown dtype `{}`", t.name, t.dtype)))?;
                    let float = matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16);
                    let dtype = match fill {
                        Some(RandomFill { dtype: Some(to), .. }) if float => *to,
                        _ => dtype,
                    };
                    let random = float && fill.is_some_and(|f| (f.keep)(&file.path, &t.name));
                    Ok((t.name.as_str(), dtype, t.shape.as_slice(), random))
                })
                .collect::<Result<Vec<_>, CheckpointError>>()?;
            match fill {
                Some(fill) => write_random_safetensors(&path, &specs, fill.seed)?,
                None => {
                    let specs: Vec<_> = specs.iter().map(|&(n, d, s, _)| (n, d, s)).collect();
                    write_sparse_safetensors(&path, &specs)?
                }
            };
        }
        match (self.format.as_str(), self.files.as_slice()) {
            ("single_file", [only]) => Ok(dir.join(&only.path)),
            ("diffusers", _) => Ok(dir.to_path_buf()),
            (format, files) => {
                Err(bad(format!("format `{format}` with {} files is not a checkpoint layout", files.len())))
            }
        }
    }
}

/// `p` as a relative path without `..`, or `None`.
fn relative(p: &str) -> Option<&Path> {
    let path = Path::new(p);
    path.components().all(|c| matches!(c, PathComponent::Normal(_))).then_some(path)
}

fn create_parent(path: &Path) -> Result<(), CheckpointError> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent)
            .map_err(|source| CheckpointError::Io { path: parent.into(), source }),
        None => Ok(()),
    }
}
