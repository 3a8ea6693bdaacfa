//! Opening a [`Checkpoint`]: map the files, name every tensor, detect the family, size the
//! components.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::config::{self, ComponentConfig, VaeConfig, infer};
use super::error::CheckpointError;
use super::family::{self, Family, Shapes};
use super::file::SafetensorsFile;
use super::layout::{self, Format, OpenOptions};
use super::model::{Checkpoint, ComponentInfo, ConfigSource, Entry, IgnoredTensor, UnrecognisedTensor};
use super::names::{self, KeyKind};
use super::{Component, Warning};

/// Opens a single file in the original layout.
pub(super) fn open_single_file(path: &Path, options: &OpenOptions) -> Result<Checkpoint, CheckpointError> {
    let file = SafetensorsFile::open(path)?;
    let structure = names::scan_single_file(file.tensors().map(|v| v.name()))
        .map_err(|reason| CheckpointError::UnetStructure { path: path.into(), reason })?;
    let mut b = Builder::new(path);
    b.add_file(file, |key| names::single_file_key(key, &structure))?;
    if b.tensors.is_empty() {
        return Err(CheckpointError::UnknownLayout { path: path.into(), reason: b.describe_unknown() });
    }
    if !b.present().contains(&Component::Unet) {
        return Err(CheckpointError::MissingComponent {
            path: path.into(),
            component: Component::Unet,
            family: None,
            hint: Some(
                "the file has no model.diffusion_model.* tensors: a standalone VAE or text encoder?".into(),
            ),
        });
    }
    let shapes = b.shapes();
    let (family, reduced) = family::detect(path, &shapes)?;
    let mut configs = Vec::new();
    for component in b.present() {
        // With a config folder (diffusers' `from_single_file(config=...)`), its config.json files
        // are honoured and checked; otherwise the weights and the family's config decide.
        let json = options.config_dir.as_ref().map(|d| d.join(component.prefix()).join("config.json"));
        if let Some(json) = json.as_ref().filter(|p| !p.is_file()) {
            b.warnings.push(Warning::MissingConfig { component, path: json.clone() });
        }
        let json = json.filter(|p| p.is_file());
        configs.push(component_config(path, component, json.as_deref(), family, &shapes)?);
    }
    let guessed: Vec<Component> = configs
        .iter()
        .filter(|(_, _, source)| *source == ConfigSource::Weights)
        .map(|(c, _, _)| *c)
        .collect();
    if reduced && !guessed.is_empty() {
        b.warnings.push(Warning::ReducedModelDefaults { components: guessed });
    }
    Ok(b.finish(Format::SingleFile, (family, reduced), configs))
}

/// Opens a standalone VAE for a model of `family`: a single file in the original layout (a
/// checkpoint's `first_stage_model.*` tensors, with or without that prefix, as
/// `vae-ft-mse-840000-ema-pruned` ships), a single file in diffusers' naming
/// (`encoder.down_blocks.…`, as `sdxl_vae.safetensors`), or a diffusers VAE folder (`config.json`
/// beside `diffusion_pytorch_model.safetensors`). Its config is the folder's `config.json`, else
/// `like` (the config of the VAE it replaces), else `family`'s published one, each checked
/// against the weights: SD 1.5 and SDXL VAEs have the same shapes, so a file cannot say which
/// family it was trained for.
pub(super) fn open_vae(
    path: &Path,
    family: Family,
    like: Option<&VaeConfig>,
) -> Result<Checkpoint, CheckpointError> {
    let (weights, json) = if path.is_dir() {
        let json = path.join("config.json");
        (path.join("diffusion_pytorch_model.safetensors"), Some(json).filter(|p| p.is_file()))
    } else {
        (path.to_path_buf(), None)
    };
    let file = SafetensorsFile::open(&weights)?;
    let diffusers_names =
        file.tensors().any(|v| v.name().contains("down_blocks.") || v.name().contains("up_blocks."));
    let mut b = Builder::new(path);
    if diffusers_names {
        b.add_file(file, |key| names::diffusers_key(Component::Vae, key))?;
    } else {
        let prefixed = |key: &str| {
            if key.starts_with("first_stage_model.") {
                key.to_owned()
            } else {
                format!("first_stage_model.{key}")
            }
        };
        let keys: Vec<String> = file.tensors().map(|v| prefixed(v.name())).collect();
        let structure = names::scan_single_file(keys.iter().map(String::as_str))
            .map_err(|reason| CheckpointError::UnetStructure { path: path.into(), reason })?;
        b.add_file(file, |key| names::single_file_key(&prefixed(key), &structure))?;
    }
    if !b.present().contains(&Component::Vae) {
        return Err(CheckpointError::MissingComponent {
            path: path.into(),
            component: Component::Vae,
            family: None,
            hint: Some(format!("none of its tensors is a VAE's: {}", b.describe_unknown())),
        });
    }
    let shapes = b.shapes();
    let config = match (json, like) {
        (None, Some(like)) => {
            infer::check_vae(path, like, &infer::vae_facts(path, &shapes)?)?;
            (Component::Vae, ComponentConfig::Vae(like.clone()), ConfigSource::Weights)
        }
        (json, _) => component_config(path, Component::Vae, json.as_deref(), family, &shapes)?,
    };
    let format = if path.is_dir() { Format::Diffusers } else { Format::SingleFile };
    Ok(b.finish(format, (family, false), vec![config]))
}

/// Opens a ControlNet (diffusers' `ControlNetModel`) as a checkpoint with one component, the
/// UNet encoder it copies plus its own tensors under `unet.` (`controlnet_cond_embedding.*`,
/// `controlnet_down_blocks.*`, `controlnet_mid_block.*`). Accepted: a diffusers folder
/// (`config.json` beside `diffusion_pytorch_model.safetensors`), a single file in diffusers'
/// naming (SDXL ControlNets as users download them), or one in the original layout
/// (`control_model.*`, with or without that prefix: ControlNet 1.0 / 1.1 for SD 1.5). The config
/// is `config.json` in the folder or in `config_dir`, checked against the weights, else read from
/// the weights with the family's published values (SDXL's head width 64, SD 1.5's 8 heads). The
/// family is the model the ControlNet serves: an added embedding means SDXL base, else SD 1.5
/// (context 768, or a reduced test model); any other (SD 2.x's 1024) is refused.
pub(super) fn open_controlnet(path: &Path, config_dir: Option<&Path>) -> Result<Checkpoint, CheckpointError> {
    let (weights, json) = if path.is_dir() {
        (path.join("diffusion_pytorch_model.safetensors"), Some(path.join("config.json")))
    } else {
        (path.to_path_buf(), config_dir.map(|d| d.join("config.json")))
    };
    let json = json.filter(|p| p.is_file());
    let file = SafetensorsFile::open(&weights)?;
    let diffusers_names = file.get("controlnet_cond_embedding.conv_in.weight").is_some();
    let original = file.tensors().any(|v| {
        let name = v.name().strip_prefix("control_model.").unwrap_or(v.name());
        name.starts_with("input_hint_block.")
    });
    let mut b = Builder::new(path);
    if diffusers_names {
        b.add_file(file, |key| names::diffusers_key(Component::Unet, key))?;
    } else if original {
        let blocks = names::scan_controlnet(file.tensors().map(|v| v.name()))
            .map_err(|reason| CheckpointError::UnetStructure { path: path.into(), reason })?;
        b.add_file(file, |key| names::controlnet_single_file_key(key, blocks))?;
    } else {
        return Err(CheckpointError::UnknownLayout {
            path: path.into(),
            reason:
                "not a ControlNet: it has neither `controlnet_cond_embedding.conv_in.weight` (diffusers) nor \
                     `control_model.input_hint_block.*` (the original layout)"
                    .into(),
        });
    }
    let shapes = b.shapes();
    let facts = infer::unet_facts(path, &shapes)?;
    let config_error = |reason: String| CheckpointError::Config { path: path.into(), reason };
    let reduced = facts.block_out_channels.first().is_some_and(|&c| c < 320);
    let family = match (facts.addition_embed_inputs, facts.cross_attention_dim) {
        (Some(_), _) => Family::SdxlBase,
        (None, Some(768)) => Family::Sd15,
        (None, Some(_)) if reduced => Family::Sd15,
        (None, context) => {
            return Err(config_error(format!(
                "a ControlNet for a {} text context without SDXL's added embedding: kiln runs SD 1.5 and SDXL \
                 ControlNets (768, and 2048 with the added embedding)",
                context.map_or("missing".to_string(), |c| format!("{c}-wide"))
            )));
        }
    };
    let (mut config, source) = match &json {
        Some(json_path) => {
            let object = config::diffusers::read_object(json_path)?;
            let mut c = config::diffusers::unet(json_path, &object, family)?;
            // A ControlNet has no decoder: its config lists no up blocks and no conv_out.
            c.up_block_types.clear();
            c.reverse_transformer_layers_per_block = None;
            c.out_channels = c.in_channels;
            infer::check_unet(json_path, &c, &facts)?;
            (c, ConfigSource::ConfigJson(json_path.clone()))
        }
        None => (infer::unet_config(path, family, &shapes)?, ConfigSource::Weights),
    };
    config.up_block_types.clear();
    config.reverse_transformer_layers_per_block = None;
    let format = if path.is_dir() { Format::Diffusers } else { Format::SingleFile };
    Ok(b.finish(format, (family, reduced), vec![(Component::Unet, ComponentConfig::Unet(config), source)]))
}

/// Opens a CLIP vision tower (the image encoder IP-Adapters take): a transformers folder
/// (`config.json` beside `model.safetensors`) or a single `.safetensors` file in transformers'
/// naming (`vision_model.*`, `visual_projection.weight`), as [`Component::ImageEncoder`]. The
/// sizes come from `config.json`, checked against the weights; without one, from the weights,
/// with 16 heads (ViT-H/14 and ViT-bigG/14 both have 16) and exact GELU.
pub(super) fn open_image_encoder(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let (weights, json) = if path.is_dir() {
        (path.join("model.safetensors"), Some(path.join("config.json")).filter(|p| p.is_file()))
    } else {
        (path.to_path_buf(), None)
    };
    let mut b = Builder::new(path);
    b.add_file(SafetensorsFile::open(&weights)?, |key| names::diffusers_key(Component::ImageEncoder, key))?;
    if !b.present().contains(&Component::ImageEncoder) {
        return Err(CheckpointError::MissingComponent {
            path: path.into(),
            component: Component::ImageEncoder,
            family: None,
            hint: Some(format!("none of its tensors is a CLIP vision tower's: {}", b.describe_unknown())),
        });
    }
    let shapes = b.shapes();
    let facts = infer::image_encoder_facts(path, &shapes)?;
    let (config, source) = match &json {
        Some(json_path) => {
            let c = config::diffusers::image_encoder(json_path, &config::diffusers::read_object(json_path)?)?;
            infer::check_image_encoder(json_path, &c, &facts)?;
            let config = ComponentConfig::ImageEncoder(c);
            check_ranges(json_path, &config)?;
            (config, ConfigSource::ConfigJson(json_path.clone()))
        }
        None => (ComponentConfig::ImageEncoder(facts.config(16, "gelu")), ConfigSource::Weights),
    };
    let format = if path.is_dir() { Format::Diffusers } else { Format::SingleFile };
    // The family is the checkpoint's business; an image encoder serves any.
    Ok(b.finish(format, (Family::SdxlBase, false), vec![(Component::ImageEncoder, config, source)]))
}

/// Opens a diffusers folder.
pub(super) fn open_diffusers(root: &Path, options: &OpenOptions) -> Result<Checkpoint, CheckpointError> {
    let folder = layout::diffusers_folder(root, options)?;
    let mut b = Builder::new(root);
    b.warnings = folder.warnings;
    for files in &folder.components {
        for path in &files.files {
            let file = SafetensorsFile::open(path)?;
            if let Some((index, map)) = &files.index {
                if let Some((name, _)) =
                    map.iter().find(|(name, shard)| shard == path && file.get(name).is_none())
                {
                    return Err(CheckpointError::ShardIndex {
                        path: index.clone(),
                        reason: format!(
                            "`{name}` is listed in {} but that shard does not hold it",
                            path.display()
                        ),
                    });
                }
            }
            b.add_file(file, |key| names::diffusers_key(files.component, key))?;
        }
    }
    let present = b.present();
    if !present.contains(&Component::Unet) {
        return Err(CheckpointError::MissingComponent {
            path: root.into(),
            component: Component::Unet,
            family: None,
            hint: Some(format!("no unet/ folder with UNet weights in {}", root.display())),
        });
    }
    let shapes = b.shapes();
    let (family, reduced) = family::detect(root, &shapes)?;
    let mut configs = Vec::new();
    for files in folder.components.iter().filter(|f| present.contains(&f.component)) {
        let json = files.dir.join("config.json");
        if !json.is_file() {
            b.warnings.push(Warning::MissingConfig { component: files.component, path: json.clone() });
        }
        let json = Some(json).filter(|p| p.is_file());
        configs.push(component_config(root, files.component, json.as_deref(), family, &shapes)?);
    }
    Ok(b.finish(Format::Diffusers, (family, reduced), configs))
}

/// A component's config: read from `json` and checked against the weights when given, otherwise
/// inferred from the weights and the family's published config.
fn component_config(
    path: &Path,
    component: Component,
    json: Option<&Path>,
    family: Family,
    shapes: &Shapes,
) -> Result<(Component, ComponentConfig, ConfigSource), CheckpointError> {
    let Some(json_path) = json else {
        let config = match component {
            Component::Unet => ComponentConfig::Unet(infer::unet_config(path, family, shapes)?),
            Component::Vae => ComponentConfig::Vae(infer::vae_config(path, family, shapes)?),
            c => ComponentConfig::TextEncoder(infer::text_config(path, c, shapes)?),
        };
        return Ok((component, config, ConfigSource::Weights));
    };
    let json = config::diffusers::read_object(json_path)?;
    let config = match component {
        Component::Unet => {
            let c = config::diffusers::unet(json_path, &json, family)?;
            infer::check_unet(json_path, &c, &infer::unet_facts(path, shapes)?)?;
            ComponentConfig::Unet(c)
        }
        Component::Vae => {
            let c = config::diffusers::vae(json_path, &json)?;
            infer::check_vae(json_path, &c, &infer::vae_facts(path, shapes)?)?;
            ComponentConfig::Vae(c)
        }
        c => {
            let facts = infer::text_facts(path, c, shapes)?;
            let config = config::diffusers::text_encoder(json_path, &json, facts.projection_dim.is_some())?;
            infer::check_text(json_path, &config, &facts)?;
            ComponentConfig::TextEncoder(config)
        }
    };
    check_ranges(json_path, &config)?;
    Ok((component, config, ConfigSource::ConfigJson(json_path.into())))
}

/// [`config::ranges`]: the values a config file gives are in range, so the model can render.
/// (Inferred configs take the family's published values, which are.)
pub(super) fn check_ranges(path: &Path, config: &ComponentConfig) -> Result<(), CheckpointError> {
    match config {
        ComponentConfig::Unet(c) => config::ranges::check_unet(path, c),
        ComponentConfig::Vae(c) => config::ranges::check_vae(path, c),
        ComponentConfig::TextEncoder(c) => config::ranges::check_text(path, c),
        ComponentConfig::ImageEncoder(c) => config::ranges::check_image_encoder(path, c),
    }
}

/// Collects canonical entries from stored tensors.
struct Builder {
    path: PathBuf,
    files: Vec<SafetensorsFile>,
    tensors: BTreeMap<String, Entry>,
    ignored: Vec<IgnoredTensor>,
    unrecognised: Vec<UnrecognisedTensor>,
    warnings: Vec<Warning>,
}

impl Builder {
    fn new(path: &Path) -> Builder {
        Builder {
            path: path.into(),
            files: Vec::new(),
            tensors: BTreeMap::new(),
            ignored: Vec::new(),
            unrecognised: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Adds every tensor of `file`, classified by `classify`.
    fn add_file(
        &mut self,
        file: SafetensorsFile,
        classify: impl Fn(&str) -> KeyKind,
    ) -> Result<(), CheckpointError> {
        let index = self.files.len();
        for view in file.tensors() {
            match classify(view.name()) {
                KeyKind::Mapped(targets) => {
                    for t in targets {
                        let shape = t
                            .transform
                            .canonical_shape(view.shape())
                            .map_err(|reason| view.bad_shape(reason))?;
                        if let Some(prev) = self.tensors.get(&t.name) {
                            let prev_file =
                                if prev.file == index { file.path() } else { self.files[prev.file].path() };
                            return Err(CheckpointError::DuplicateTensor {
                                path: self.path.clone(),
                                canonical: t.name,
                                first: format!("{} in {}", prev.key, prev_file.display()),
                                second: format!("{} in {}", view.name(), file.path().display()),
                            });
                        }
                        let entry =
                            Entry { file: index, key: view.name().into(), transform: t.transform, shape };
                        self.tensors.insert(t.name, entry);
                    }
                }
                KeyKind::Ignored(reason) => self.ignored.push(IgnoredTensor {
                    file: file.path().into(),
                    name: view.name().into(),
                    reason,
                }),
                KeyKind::Unrecognised => self.unrecognised.push(UnrecognisedTensor {
                    file: file.path().into(),
                    name: view.name().into(),
                    dtype: view.dtype().to_string(),
                    shape: view.shape().to_vec(),
                }),
            }
        }
        self.files.push(file);
        Ok(())
    }

    /// The components that have at least one canonical tensor, in pipeline order.
    fn present(&self) -> Vec<Component> {
        let mut seen: Vec<Component> =
            self.tensors.keys().filter_map(|k| Component::split_name(k).map(|(c, _)| c)).collect();
        seen.sort();
        seen.dedup();
        seen
    }

    fn shapes(&self) -> Shapes {
        self.tensors.iter().map(|(k, e)| (k.clone(), e.shape.clone())).collect()
    }

    /// Says why no tensor was recognised, with a hint at what the file is.
    fn describe_unknown(&self) -> String {
        let names: Vec<&str> = self.unrecognised.iter().map(|u| u.name.as_str()).collect();
        if names.is_empty() {
            return "the file holds no tensors (only ignored buffers, if any)".into();
        }
        let has = |p: &str| names.iter().any(|n| n.starts_with(p));
        let hint = if has("down_blocks.") && has("conv_in.") && has("time_embedding.") {
            "; these are a diffusers UNet's names: open the diffusers folder, not one component file"
        } else if has("decoder.up_blocks.") || has("encoder.down_blocks.") {
            "; these are a diffusers VAE's names: open the diffusers folder, not one component file"
        } else if has("decoder.up.") || has("encoder.down.") {
            "; these look like a standalone VAE in the original layout, which kiln opens only inside a full checkpoint"
        } else if has("text_model.") || has("embeddings.token_embedding") {
            "; these are a CLIP text encoder's names: open the diffusers folder, not one component file"
        } else if has("lora_") || names.iter().any(|n| n.contains(".lora_")) {
            "; these look like a LoRA, not a model"
        } else {
            ""
        };
        let sample: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
        format!("none of its {} tensors has a known name (e.g. {}){hint}", names.len(), sample.join(", "))
    }

    fn finish(
        self,
        format: Format,
        (family, reduced): (Family, bool),
        configs: Vec<(Component, ComponentConfig, ConfigSource)>,
    ) -> Checkpoint {
        let mut components: Vec<ComponentInfo> = configs
            .into_iter()
            .map(|(component, config, config_source)| ComponentInfo {
                component,
                config,
                config_source,
                parameters: 0,
                tensors: 0,
                dtypes: BTreeMap::new(),
                files: Vec::new(),
            })
            .collect();
        for (name, e) in &self.tensors {
            let Some((c, _)) = Component::split_name(name) else { continue };
            let Some(info) = components.iter_mut().find(|i| i.component == c) else { continue };
            let file = &self.files[e.file];
            info.parameters += e.shape.iter().product::<usize>() as u64;
            info.tensors += 1;
            let dtype = file.get(&e.key).expect("entries point at tensors of their file").dtype();
            *info.dtypes.entry(dtype.to_string()).or_default() += 1;
            if !info.files.iter().any(|f| f == file.path()) {
                info.files.push(file.path().into());
            }
        }
        let missing = family
            .components()
            .iter()
            .copied()
            .filter(|c| !components.iter().any(|i| i.component == *c))
            .collect();
        Checkpoint {
            path: self.path,
            format,
            family,
            reduced,
            files: self.files,
            tensors: self.tensors,
            components,
            missing,
            ignored: self.ignored,
            unrecognised: self.unrecognised,
            warnings: self.warnings,
            check_weights: true,
        }
    }
}
