//! Where a checkpoint's files are: a single file, or a diffusers folder whose component folders
//! hold plain, variant (`diffusion_pytorch_model.fp16.safetensors`) or sharded
//! (`diffusion_pytorch_model.safetensors.index.json` + shards) weights.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Component;
use super::config::diffusers::read_object;
use super::error::{CheckpointError, Warning};

/// How a checkpoint is laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One `.safetensors` file in the original LDM / sgm naming (`model.diffusion_model.…`).
    SingleFile,
    /// A diffusers folder: `model_index.json` and one folder per component.
    Diffusers,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::SingleFile => "single file (original layout)",
            Format::Diffusers => "diffusers folder",
        })
    }
}

/// Choices made when opening a checkpoint.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// The weight variant to prefer in a diffusers folder (`fp16`, ...). Without one the
    /// full-precision files are preferred, as diffusers does; a folder holding only variant
    /// files is read either way.
    pub variant: Option<String>,
    /// For a single file: a folder whose `unet/config.json`, `vae/config.json`, ... describe
    /// the components (a diffusers folder of the same model, as diffusers' `from_single_file`
    /// takes with `config=`). They are honoured and checked against the weights; without them
    /// the sizes come from the weights and the family's published config.
    pub config_dir: Option<PathBuf>,
    /// Read weights without checking that they are finite. By default every tensor read
    /// through [`super::Checkpoint::tensor`] is checked once, as read (one pass over values
    /// already in memory), so a checkpoint holding NaN or infinity fails at load naming the
    /// tensor instead of rendering black images.
    pub skip_weight_check: bool,
}

impl OpenOptions {
    /// Prefers the `variant` weight files (`diffusion_pytorch_model.{variant}.safetensors`).
    pub fn variant(mut self, variant: impl Into<String>) -> Self {
        self.variant = Some(variant.into());
        self
    }

    /// Skips the finiteness check of weights as they are read (see
    /// [`OpenOptions::skip_weight_check`]).
    pub fn skip_weight_check(mut self, skip: bool) -> Self {
        self.skip_weight_check = skip;
        self
    }

    /// Reads a single file's component configs from `dir` (see [`OpenOptions::config_dir`]).
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(dir.into());
        self
    }
}

/// The weight files of one component of a diffusers folder.
#[derive(Clone, Debug)]
pub(crate) struct ComponentFiles {
    pub component: Component,
    pub dir: PathBuf,
    /// The safetensors files, in shard order.
    pub files: Vec<PathBuf>,
    /// The shard index, with its weight map, when the weights are sharded.
    pub index: Option<(PathBuf, Vec<(String, PathBuf)>)>,
}

/// A diffusers folder's components and what was noticed finding them.
#[derive(Debug)]
pub(crate) struct DiffusersFolder {
    pub components: Vec<ComponentFiles>,
    pub warnings: Vec<Warning>,
}

/// Whether `dir` looks like a diffusers folder: a model_index.json or a component subfolder.
pub(crate) fn is_diffusers_folder(dir: &Path) -> bool {
    dir.join("model_index.json").is_file() || Component::ALL.iter().any(|c| dir.join(c.prefix()).is_dir())
}

/// Whether `dir` looks like one component folder of a diffusers model (config.json + weights).
pub(crate) fn is_component_folder(dir: &Path) -> bool {
    dir.join("config.json").is_file() && weight_sets(dir, None).is_ok_and(|sets| !sets.is_empty())
}

/// The weight file names kiln looks for, by stem: diffusers models and transformers models.
const STEMS: &[&str] = &["diffusion_pytorch_model", "model"];

/// One way a component's weights can be stored, in the order they are preferred.
#[derive(Clone, Debug, PartialEq, Eq)]
enum WeightSet {
    Single(PathBuf),
    Sharded(PathBuf),
}

impl WeightSet {
    fn path(&self) -> &Path {
        match self {
            WeightSet::Single(p) | WeightSet::Sharded(p) => p,
        }
    }
}

/// Finds the components of the diffusers folder `root`.
pub(crate) fn diffusers_folder(
    root: &Path,
    options: &OpenOptions,
) -> Result<DiffusersFolder, CheckpointError> {
    let mut warnings = Vec::new();
    let index_path = root.join("model_index.json");
    let declared = if index_path.is_file() { declared_components(&index_path)? } else { Vec::new() };
    let mut components = Vec::new();
    for component in Component::ALL {
        let dir = root.join(component.prefix());
        if !dir.is_dir() {
            if declared.contains(&component) {
                warnings.push(Warning::DeclaredComponentAbsent { component });
            }
            continue;
        }
        let sets = weight_sets(&dir, options.variant.as_deref())?;
        let Some(chosen) = sets.first().cloned() else {
            return Err(CheckpointError::NoWeights { path: dir.clone(), found: other_weight_files(&dir)? });
        };
        if sets.len() > 1 {
            warnings.push(Warning::SeveralWeightFiles {
                component,
                used: chosen.path().into(),
                ignored: sets[1..].iter().map(|s| s.path().into()).collect(),
            });
        }
        components.push(match chosen {
            WeightSet::Single(file) => ComponentFiles { component, dir, files: vec![file], index: None },
            WeightSet::Sharded(index) => {
                let map = shard_map(&dir, &index)?;
                let mut files: Vec<PathBuf> = map.iter().map(|(_, f)| f.clone()).collect();
                files.sort();
                files.dedup();
                ComponentFiles { component, dir, files, index: Some((index, map)) }
            }
        });
    }
    Ok(DiffusersFolder { components, warnings })
}

/// The components a model_index.json names with a class (`"vae": ["diffusers", "AutoencoderKL"]`);
/// `[null, null]` entries (the refiner's `text_encoder`) do not count.
fn declared_components(path: &Path) -> Result<Vec<Component>, CheckpointError> {
    let o = read_object(path)?;
    Ok(Component::ALL
        .into_iter()
        .filter(|c| match o.get(c.prefix()) {
            Some(Value::Array(a)) => a.iter().any(|v| !v.is_null()),
            _ => false,
        })
        .collect())
}

/// The weight sets present in a component folder, best first: the preferred variant (if one is
/// asked for), then full precision, then other variants in name order; single files before
/// shards of the same kind.
fn weight_sets(dir: &Path, variant: Option<&str>) -> Result<Vec<WeightSet>, CheckpointError> {
    let names = list_dir(dir)?;
    let has = |n: &str| names.iter().any(|x| x == n);
    let mut variants: Vec<String> = names
        .iter()
        .filter_map(|n| {
            STEMS.iter().find_map(|stem| {
                let v = n.strip_prefix(stem)?.strip_prefix('.')?;
                let v = v
                    .strip_suffix(".safetensors")
                    .or_else(|| v.strip_prefix("safetensors.index.")?.strip_suffix(".json"))?;
                (!v.is_empty() && !v.contains('.') && !v.contains('-')).then(|| v.to_string())
            })
        })
        .collect();
    variants.sort();
    variants.dedup();
    let mut order: Vec<Option<&str>> = Vec::new();
    if let Some(v) = variant {
        order.push(Some(v));
    }
    order.push(None);
    order.extend(variants.iter().map(|v| Some(v.as_str())).filter(|v| *v != variant));
    let mut sets = Vec::new();
    for v in order {
        for stem in STEMS {
            let (single, index) = match v {
                None => (format!("{stem}.safetensors"), format!("{stem}.safetensors.index.json")),
                Some(v) => (format!("{stem}.{v}.safetensors"), format!("{stem}.safetensors.index.{v}.json")),
            };
            if has(&single) {
                sets.push(WeightSet::Single(dir.join(single)));
            }
            if has(&index) {
                sets.push(WeightSet::Sharded(dir.join(index)));
            }
        }
    }
    if sets.is_empty() {
        // Last resort: a folder holding exactly one safetensors file under another name.
        let any: Vec<&String> = names.iter().filter(|n| n.ends_with(".safetensors")).collect();
        if let [only] = any[..] {
            sets.push(WeightSet::Single(dir.join(only)));
        }
    }
    Ok(sets)
}

/// A sharded index's weight map: tensor name to shard path (in the index's order of names).
fn shard_map(dir: &Path, index: &Path) -> Result<Vec<(String, PathBuf)>, CheckpointError> {
    let o = read_object(index)?;
    let bad = |reason: String| CheckpointError::ShardIndex { path: index.into(), reason };
    let Some(Value::Object(map)) = o.get("weight_map") else {
        return Err(bad("no `weight_map` object mapping tensor names to shard files".into()));
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, shard) in map {
        let shard = shard
            .as_str()
            .ok_or_else(|| bad(format!("the shard of `{name}` is {shard}, not a file name")))?;
        if shard.contains('/') || shard.contains('\\') || shard == ".." {
            return Err(bad(format!("shard `{shard}` of `{name}` is not a plain file name")));
        }
        let path = dir.join(shard);
        if !path.is_file() {
            return Err(bad(format!("shard `{shard}` (listed for `{name}`) is missing")));
        }
        out.push((name.clone(), path));
    }
    if out.is_empty() {
        return Err(bad("the weight map is empty".into()));
    }
    Ok(out)
}

fn list_dir(dir: &Path) -> Result<Vec<String>, CheckpointError> {
    let io = |source| CheckpointError::Io { path: dir.into(), source };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Weight-like files kiln does not read, to name them in [`CheckpointError::NoWeights`].
fn other_weight_files(dir: &Path) -> Result<Vec<String>, CheckpointError> {
    Ok(list_dir(dir)?
        .into_iter()
        .filter(|n| [".bin", ".ckpt", ".pt", ".pth", ".safetensors", ".gguf"].iter().any(|e| n.ends_with(e)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        for n in names {
            std::fs::write(dir.join(n), b"").unwrap();
        }
    }

    #[test]
    fn plain_weights_are_preferred_unless_a_variant_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        touch(
            dir.path(),
            &[
                "diffusion_pytorch_model.safetensors",
                "diffusion_pytorch_model.fp16.safetensors",
                "config.json",
            ],
        );
        let sets = weight_sets(dir.path(), None).unwrap();
        assert_eq!(sets[0], WeightSet::Single(dir.path().join("diffusion_pytorch_model.safetensors")));
        assert_eq!(sets.len(), 2);
        let sets = weight_sets(dir.path(), Some("fp16")).unwrap();
        assert_eq!(sets[0], WeightSet::Single(dir.path().join("diffusion_pytorch_model.fp16.safetensors")));
    }

    #[test]
    fn variant_only_and_sharded_variants_are_found() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["model.fp16.safetensors"]);
        assert_eq!(
            weight_sets(dir.path(), None).unwrap(),
            [WeightSet::Single(dir.path().join("model.fp16.safetensors"))]
        );
        let dir = tempfile::tempdir().unwrap();
        touch(
            dir.path(),
            &[
                "diffusion_pytorch_model.safetensors.index.fp16.json",
                "diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
                "diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
            ],
        );
        assert_eq!(
            weight_sets(dir.path(), None).unwrap(),
            [WeightSet::Sharded(dir.path().join("diffusion_pytorch_model.safetensors.index.fp16.json"))]
        );
    }
}
