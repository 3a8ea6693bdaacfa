//! [`Checkpoint`]: a whole model opened from either layout, every tensor under its canonical name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::config::{ComponentConfig, ImageEncoderConfig, TextEncoderConfig, UNetConfig, VaeConfig};
use super::error::{CheckpointError, Warning};
use super::family::{Family, Shapes};
use super::file::{Dtype, SafetensorsFile, TensorView};
use super::layout::{self, Format, OpenOptions};
use super::names::Transform;
use super::open::{open_diffusers, open_single_file};
use super::{Component, decode};
use crate::{CpuStorage, DType, Tensor};

/// A model checkpoint: its files mapped, its format and family detected, each component's size
/// known, and every tensor reachable by its canonical name.
#[derive(Debug)]
pub struct Checkpoint {
    pub(super) path: PathBuf,
    pub(super) format: Format,
    pub(super) family: Family,
    pub(super) reduced: bool,
    pub(super) files: Vec<SafetensorsFile>,
    pub(super) tensors: BTreeMap<String, Entry>,
    pub(super) components: Vec<ComponentInfo>,
    pub(super) missing: Vec<Component>,
    pub(super) ignored: Vec<IgnoredTensor>,
    pub(super) unrecognised: Vec<UnrecognisedTensor>,
    pub(super) warnings: Vec<Warning>,
    /// Whether [`Checkpoint::tensor`] checks the values it reads are finite.
    pub(super) check_weights: bool,
}

/// Where a canonical tensor comes from.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) file: usize,
    pub(super) key: String,
    pub(super) transform: Transform,
    pub(super) shape: Vec<usize>,
}

/// One component of a checkpoint: its size, parameter count and storage.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ComponentInfo {
    /// Which component.
    pub component: Component,
    /// Its size.
    pub config: ComponentConfig,
    /// Where the size came from.
    pub config_source: ConfigSource,
    /// Number of parameters (elements of its canonical tensors).
    pub parameters: u64,
    /// Number of canonical tensors.
    pub tensors: usize,
    /// How many canonical tensors are stored in each dtype.
    pub dtypes: BTreeMap<String, usize>,
    /// The files its tensors are read from.
    pub files: Vec<PathBuf>,
}

/// Where a component's config came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum ConfigSource {
    /// A diffusers `config.json`, checked against the weights.
    ConfigJson(PathBuf),
    /// The weights, with the family's published config for what they cannot tell.
    Weights,
}

/// A stored tensor that is known and deliberately not used.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IgnoredTensor {
    /// The file holding it.
    pub file: PathBuf,
    /// Its stored name.
    pub name: String,
    /// Why it is ignored.
    pub reason: &'static str,
}

/// A stored tensor kiln does not know.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UnrecognisedTensor {
    /// The file holding it.
    pub file: PathBuf,
    /// Its stored name.
    pub name: String,
    /// Its stored dtype.
    pub dtype: String,
    /// Its stored shape.
    pub shape: Vec<usize>,
}

/// A canonical tensor as stored: the source view, the transform producing the canonical
/// tensor, and the canonical shape.
#[derive(Clone, Copy, Debug)]
pub struct CanonicalView<'a> {
    /// The canonical name.
    pub name: &'a str,
    /// The stored tensor it is made from.
    pub source: TensorView<'a>,
    /// How it is made.
    pub transform: Transform,
    /// The canonical shape.
    pub shape: &'a [usize],
}

impl<'a> CanonicalView<'a> {
    /// The canonical tensor's bytes borrowed from the file (stored dtype, little-endian), for
    /// every transform but [`Transform::Transpose`], which needs a copy.
    pub fn bytes(&self) -> Result<Option<&'a [u8]>, CheckpointError> {
        match self.transform {
            Transform::Identity | Transform::Reshape => Ok(Some(self.source.data())),
            Transform::Rows { index, of } => self.source.rows(index, of).map(|(bytes, _)| Some(bytes)),
            Transform::Transpose => Ok(None),
        }
    }

    /// Produces the canonical tensor in `dtype` on the host.
    pub fn to_tensor(&self, dtype: DType) -> Result<Tensor, CheckpointError> {
        let src = &self.source;
        match self.transform {
            Transform::Identity | Transform::Reshape => src.to_tensor_as(self.shape, dtype),
            Transform::Rows { index, of } => {
                let (bytes, _) = src.rows(index, of)?;
                let storage = decode::decode(bytes, src.dtype(), dtype).ok_or_else(|| src.unsupported())?;
                Tensor::from_cpu_storage(storage, self.shape).map_err(|e| src.bad_shape(e.to_string()))
            }
            Transform::Transpose => {
                let [rows, cols] = src.shape()[..] else {
                    return Err(src.bad_shape("expected a 2-D tensor to transpose".into()));
                };
                let v = src.to_f32_vec()?;
                let t: Vec<f32> = (0..cols * rows).map(|i| v[(i % rows) * cols + i / rows]).collect(); // [cols, rows]
                Tensor::from_cpu_storage(CpuStorage::from_f32(t, dtype), self.shape)
                    .map_err(|e| src.bad_shape(e.to_string()))
            }
        }
    }
}

impl Checkpoint {
    /// Opens a single `.safetensors` file, a diffusers folder, or a folder's `model_index.json`.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::open_with(path, &OpenOptions::default())
    }

    /// [`Checkpoint::open`] with options (the diffusers weight variant to prefer).
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CheckpointError::NotFound { path: path.into() },
            _ => CheckpointError::Io { path: path.into(), source },
        })?;
        let root = if meta.is_file() && path.file_name().is_some_and(|n| n == "model_index.json") {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            path.to_path_buf()
        };
        if root.is_dir() {
            if !layout::is_diffusers_folder(&root) {
                let hint = if layout::is_component_folder(&root) {
                    "; it looks like one component folder of a diffusers model: open the folder above it"
                } else {
                    ""
                };
                return Err(CheckpointError::UnknownLayout {
                    path: root,
                    reason: format!(
                        "a folder without model_index.json or unet/, vae/, text_encoder/ subfolders{hint}"
                    ),
                });
            }
            open_diffusers(&root, options)
        } else {
            open_single_file(&root, options)
        }
        .map(|ckpt| Checkpoint { check_weights: !options.skip_weight_check, ..ckpt })
    }

    /// Opens a standalone VAE for a model of `family`: a single file in the original naming
    /// (`first_stage_model.*`, with or without the prefix) or diffusers' (`encoder.down_blocks.*`),
    /// or a diffusers VAE folder. Only [`Component::Vae`] is present. Its config is the folder's
    /// `config.json`, else `like` (the config of the VAE it replaces: scaling factor, upcast,
    /// group norms), else `family`'s published one, each checked against the weights (SD 1.5
    /// and SDXL VAEs have the same shapes: a file cannot say which family it was trained for).
    pub fn open_vae(
        path: impl AsRef<Path>,
        family: Family,
        like: Option<&VaeConfig>,
    ) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(CheckpointError::NotFound { path: path.into() });
        }
        super::open::open_vae(path, family, like)
    }

    /// Opens a ControlNet: a diffusers folder, or a single file in diffusers' naming or the
    /// original (`control_model.*`) layout. Only [`Component::Unet`] is present: the encoder and
    /// mid block the ControlNet copies from a UNet, plus `controlnet_cond_embedding.*`,
    /// `controlnet_down_blocks.*` and `controlnet_mid_block.*`; its config has no up blocks.
    /// [`Checkpoint::family`] is the family of the models it serves. `config_dir`: a folder whose
    /// `config.json` describes a single file (as diffusers' `from_single_file(config=...)`).
    pub fn open_controlnet(
        path: impl AsRef<Path>,
        config_dir: Option<&Path>,
    ) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(CheckpointError::NotFound { path: path.into() });
        }
        super::open::open_controlnet(path, config_dir)
    }

    /// Opens a CLIP vision tower for IP-Adapters (a transformers folder or one `.safetensors`
    /// file); only [`Component::ImageEncoder`] is present.
    pub fn open_image_encoder(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(CheckpointError::NotFound { path: path.into() });
        }
        super::open::open_image_encoder(path)
    }

    /// The image encoder's config, when this is one ([`Checkpoint::open_image_encoder`]).
    pub fn image_encoder_config(&self) -> Option<&ImageEncoderConfig> {
        match self.component(Component::ImageEncoder).map(|c| &c.config) {
            Some(ComponentConfig::ImageEncoder(c)) => Some(c),
            _ => None,
        }
    }

    /// The path opened (the file, or the diffusers folder).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The on-disk layout.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The model family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Whether the model is a reduced-size test model (real topology, tiny widths), recognised
    /// by topology rather than by the family's real widths.
    pub fn is_reduced(&self) -> bool {
        self.reduced
    }

    /// The components present, in pipeline order.
    pub fn components(&self) -> &[ComponentInfo] {
        &self.components
    }

    /// One component, if present.
    pub fn component(&self, component: Component) -> Option<&ComponentInfo> {
        self.components.iter().find(|c| c.component == component)
    }

    /// The UNet's config (every checkpoint has a UNet).
    pub fn unet_config(&self) -> &UNetConfig {
        match self.component(Component::Unet).map(|c| &c.config) {
            Some(ComponentConfig::Unet(c)) => c,
            _ => unreachable!("Checkpoint::open refuses checkpoints without a UNet"),
        }
    }

    /// The VAE's config, if the checkpoint has a VAE.
    pub fn vae_config(&self) -> Option<&VaeConfig> {
        match self.component(Component::Vae).map(|c| &c.config) {
            Some(ComponentConfig::Vae(c)) => Some(c),
            _ => None,
        }
    }

    /// A text encoder's config (`TextEncoder` or `TextEncoder2`), if present.
    pub fn text_encoder_config(&self, component: Component) -> Option<&TextEncoderConfig> {
        match self.component(component).map(|c| &c.config) {
            Some(ComponentConfig::TextEncoder(c)) => Some(c),
            _ => None,
        }
    }

    /// Components the family's pipeline needs that this checkpoint lacks (a UNet-only single
    /// file lacks the VAE and text encoders). Not an error by itself: see [`Checkpoint::require`].
    pub fn missing_components(&self) -> &[Component] {
        &self.missing
    }

    /// Fails with [`CheckpointError::MissingComponent`] for the first of `components` absent.
    pub fn require(&self, components: &[Component]) -> Result<(), CheckpointError> {
        match components.iter().find(|c| self.component(**c).is_none()) {
            None => Ok(()),
            Some(&component) => Err(CheckpointError::MissingComponent {
                path: self.path.clone(),
                component,
                family: Some(self.family),
                hint: Some(match self.format {
                    Format::SingleFile => "supply it from a separate file".into(),
                    Format::Diffusers => format!("no {}/ folder with weights", component.prefix()),
                }),
            }),
        }
    }

    /// Fails unless every component the family's pipeline needs is present.
    pub fn require_complete(&self) -> Result<(), CheckpointError> {
        self.require(self.family.components())
    }

    /// The canonical names, in order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of canonical tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no canonical tensors (never true for an opened checkpoint).
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Whether a canonical tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// A canonical tensor's shape.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.shape.as_slice())
    }

    /// Every canonical name with its canonical shape.
    pub fn shapes(&self) -> Shapes {
        self.tensors.iter().map(|(k, e)| (k.clone(), e.shape.clone())).collect()
    }

    /// A canonical tensor as stored, without reading it.
    pub fn view(&self, name: &str) -> Result<CanonicalView<'_>, CheckpointError> {
        let (name, e) = self
            .tensors
            .get_key_value(name)
            .ok_or_else(|| CheckpointError::MissingTensor { path: self.path.clone(), name: name.into() })?;
        let source = self.files[e.file].get(&e.key).expect("entries point at tensors of their file");
        Ok(CanonicalView { name, source, transform: e.transform, shape: &e.shape })
    }

    /// Reads a canonical tensor into host memory as `dtype`, applying its transform. Unless
    /// opened with [`OpenOptions::skip_weight_check`], a tensor holding NaN or infinity (as
    /// stored, or once narrowed to `dtype`) is a [`CheckpointError::NotFinite`] naming it.
    pub fn tensor(&self, name: &str, dtype: DType) -> Result<Tensor, CheckpointError> {
        let view = self.view(name)?;
        let tensor = view.to_tensor(dtype)?;
        if self.check_weights {
            let count = tensor.count_non_finite().map_err(|e| view.source.bad_shape(e.to_string()))?;
            if count > 0 {
                return Err(CheckpointError::NotFinite {
                    path: view.source.file().to_path_buf(),
                    tensor: view.source.name().to_string(),
                    canonical: name.to_string(),
                    count,
                    total: tensor.elem_count(),
                    stored: view.source.dtype(),
                    read_as: dtype,
                });
            }
        }
        let file = &self.files[self.tensors[name].file];
        file.release(view.source.data());
        Ok(tensor)
    }

    /// Parameters of `component` (0 when absent).
    pub fn parameters(&self, component: Component) -> u64 {
        self.component(component).map_or(0, |c| c.parameters)
    }

    /// Every stored dtype of the canonical tensors.
    pub fn dtypes(&self) -> BTreeSet<Dtype> {
        self.tensors.values().map(|e| self.files[e.file].get(&e.key).expect("entry").dtype()).collect()
    }

    /// Known non-weight tensors that were skipped, with reasons.
    pub fn ignored(&self) -> &[IgnoredTensor] {
        &self.ignored
    }

    /// Tensors kiln does not know (listed, not an error).
    pub fn unrecognised(&self) -> &[UnrecognisedTensor] {
        &self.unrecognised
    }

    /// Oddities that did not stop the checkpoint opening.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The mapped files.
    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }
}
