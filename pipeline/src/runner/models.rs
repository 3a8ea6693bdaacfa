//! The run's checkpoints: the `--model` engine, loaded at the start and kept, and the `--assets`
//! checkpoints requests name, loaded when their first group renders and kept in a cache bounded
//! by `--model-cache-bytes` (least recently used first out, before a load that would not fit).
//! Groups come clustered by model (see [`super::batch::cluster_by`]), so each asset is loaded
//! once; one that fails to load is not tried again. Within a model, groups come clustered by
//! LoRA set and VAE, merged into the engine before the group renders (and undone, bit for bit,
//! when the next group wants another set).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Instant;

use kiln_runtime::checkpoint::{Checkpoint, OpenOptions};
use kiln_runtime::{DType, Device};

use super::prepare::AssetSet;
use super::progress::ModelLoad;
use crate::embeddings::EmbeddingFile;
use crate::generate::Engine;
use crate::generate::IpModels;
use crate::lora::{LoraFile, WeightedLora};
use crate::models::unet::ControlNet;

/// The default engine and the asset checkpoints met so far.
#[derive(Debug)]
pub struct Models {
    default: Engine,
    dtype: DType,
    device: Device,
    /// How asset checkpoints are opened (the weight check).
    open: OpenOptions,
    /// Loaded asset engines with their weight bytes, least recently used first.
    cache: Vec<(Engine, u64)>,
    /// The most weight bytes `cache` may hold (one engine is always allowed).
    budget: u64,
    /// Each checkpoint loaded, with how long it took.
    loads: Vec<ModelLoad>,
    /// Asset checkpoints that failed to load, with why.
    failed: HashMap<PathBuf, String>,
    /// LoRA files opened so far (memory-mapped), or why one cannot be opened.
    lora_files: HashMap<PathBuf, Result<LoraFile, String>>,
    /// Embedding files read so far, or why one cannot be read.
    embedding_files: HashMap<PathBuf, Result<EmbeddingFile, String>>,
    /// What merging each LoRA into each model reported: (model, LoRA) -> warning, if any.
    lora_notes: HashMap<(PathBuf, PathBuf), Option<String>>,
    /// The SDXL refiner's checkpoint, if one is configured.
    refiner_path: Option<PathBuf>,
    /// The refiner, loaded when a group first needs it (or why it cannot be).
    refiner: Option<Result<Arc<Engine>, String>>,
    /// What the refiner shares with the `--model` engine, for the run log once.
    refiner_note: Option<String>,
    /// ControlNets loaded so far (shared by every engine: one dtype and device), or why one
    /// cannot be.
    controlnets: HashMap<PathBuf, Result<Arc<ControlNet>, String>>,
    /// IP-Adapters with their image encoders loaded so far, or why one cannot be.
    ip_adapters: HashMap<(PathBuf, PathBuf), Result<Arc<IpModels>, String>>,
}

/// The default `--model-cache-bytes`: half the memory free on `device` when the run starts (the
/// host's for the CPU, the GPU's for CUDA), or 8 GiB where that cannot be told.
pub fn default_cache_bytes(device: Device) -> u64 {
    device.free_memory().map_or(8 << 30, |free| free / 2)
}

/// Why a group has no engine to render with.
#[derive(Debug)]
pub enum Unready {
    /// The checkpoint cannot be loaded: its requests are left for a rerun.
    Checkpoint(String),
    /// A LoRA of the set cannot be merged, the VAE loaded or an embedding added: an error
    /// record on `field` for each request of the group.
    Asset {
        /// The request field naming the asset (`loras`, `vae`, `textual_inversions`).
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// An engine ready for a group, with the warnings its LoRA set brings (keys not applied).
pub struct Ready<'a> {
    /// The engine, with the group's LoRA set merged.
    pub engine: &'a Engine,
    /// One warning per LoRA that had keys it could not apply.
    pub warnings: Vec<String>,
    /// Messages for the run log: what each LoRA merged for the first time applied.
    pub log: Vec<String>,
}

impl Models {
    /// Starts with the loaded `--model` engine; assets load in `dtype` on `device`, opened
    /// with `open`, and stay cached up to `budget` bytes of weights.
    pub fn new(default: Engine, dtype: DType, device: Device, open: OpenOptions, budget: u64) -> Models {
        Models {
            default,
            dtype,
            device,
            open,
            cache: Vec::new(),
            budget,
            loads: Vec::new(),
            failed: HashMap::new(),
            lora_files: HashMap::new(),
            embedding_files: HashMap::new(),
            lora_notes: HashMap::new(),
            refiner_path: None,
            refiner: None,
            refiner_note: None,
            controlnets: HashMap::new(),
            ip_adapters: HashMap::new(),
        }
    }

    /// Configures the SDXL refiner (loaded when first needed).
    pub fn with_refiner(mut self, path: Option<PathBuf>) -> Models {
        self.refiner_path = path;
        self
    }

    /// The refiner, loaded on first call; an error when none is configured or it cannot load.
    fn refiner(&mut self) -> Result<Arc<Engine>, String> {
        let Some(path) = self.refiner_path.clone() else {
            return Err("no SDXL refiner is configured".into());
        };
        if self.refiner.is_none() {
            let started = Instant::now();
            let loaded = self
                .default
                .load_refiner(&path, &self.open)
                .map_err(|e| format!("cannot load the refiner {}: {e}", path.display()));
            if let Ok((_, shared)) = &loaded {
                self.loads.push(ModelLoad { path: path.clone(), seconds: started.elapsed().as_secs_f64() });
                self.refiner_note = Some(format!(
                    "refiner {}: holds {} text encoder 2 tensors ({:.1} MB) and the VAE ({:.1} MB) once, \
                     shared with {}",
                    path.display(),
                    shared.text_tensors,
                    shared.text_bytes as f64 / 1e6,
                    shared.vae_bytes as f64 / 1e6,
                    self.default.path().display()
                ));
            }
            let long_prompts = self.default.long_prompts();
            self.refiner = Some(loaded.map(|(e, _)| Arc::new(e.with_long_prompts(long_prompts))));
        }
        self.refiner.clone().expect("set above")
    }

    /// The `--model` checkpoint's path.
    pub fn default_path(&self) -> &Path {
        self.default.path()
    }

    /// The engine for the checkpoint at `path` with `assets` applied (LoRAs merged, VAE in
    /// place of its own, embeddings' triggers added), loading the checkpoint if needed; with
    /// `refine`, the refiner attached (loaded if needed: a failure is an error on `use_refiner`).
    pub fn engine(&mut self, path: &Path, assets: &AssetSet, refine: bool) -> Result<Ready<'_>, Unready> {
        let refiner_error = |reason: String| Unready::Asset { field: "use_refiner", reason };
        let refiner = if refine { Some(self.refiner().map_err(refiner_error)?) } else { None };
        let (loras, vae) = (&assets.loras, assets.vae.as_deref());
        let lora_error = |reason: String| Unready::Asset { field: "loras", reason };
        let embedding_error = |reason: String| Unready::Asset { field: "textual_inversions", reason };
        for (file, _) in &assets.embeddings {
            open_once(&mut self.embedding_files, file, |f| EmbeddingFile::open(f).map_err(|e| e.to_string()));
        }
        self.load(path).map_err(Unready::Checkpoint)?;
        let mut log: Vec<String> = self.refiner_note.take().into_iter().collect();
        let controlnet = match &assets.controlnet {
            None => None,
            Some(file) => {
                let (dtype, device) = (self.dtype, self.device);
                if !self.controlnets.contains_key(file) {
                    let started = Instant::now();
                    let loaded = Checkpoint::open_controlnet(file, None)
                        .map_err(|e| e.to_string())
                        .and_then(|ckpt| ControlNet::load(&ckpt, dtype, device).map_err(|e| e.to_string()));
                    if loaded.is_ok() {
                        log.push(format!(
                            "ControlNet {}: loaded in {:.1} s",
                            file.display(),
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    self.controlnets.insert(file.clone(), loaded.map(Arc::new));
                }
                match &self.controlnets[file] {
                    Ok(net) => Some(net.clone()),
                    Err(reason) => {
                        return Err(Unready::Asset { field: "controlnet", reason: reason.clone() });
                    }
                }
            }
        };
        for (file, _) in loras {
            open_once(&mut self.lora_files, file, |f| LoraFile::open(f).map_err(|e| e.to_string()));
        }
        let mut set = Vec::with_capacity(loras.len());
        for (file, weight) in loras {
            match &self.lora_files[file] {
                Ok(opened) => set.push(WeightedLora { file: opened, weight: f32::from_bits(*weight) }),
                Err(reason) => return Err(lora_error(reason.clone())),
            }
        }
        let mut embeddings = Vec::with_capacity(assets.embeddings.len());
        for (file, trigger) in &assets.embeddings {
            match &self.embedding_files[file] {
                Ok(opened) => embeddings.push((trigger.clone(), opened)),
                Err(reason) => return Err(embedding_error(reason.clone())),
            }
        }
        let ip_adapter = match &assets.ip_adapter {
            None => None,
            Some(pair) => {
                if !self.ip_adapters.contains_key(pair) {
                    let started = Instant::now();
                    let loaded = self.default.load_ip_adapter(&pair.0, &pair.1).map_err(|e| e.to_string());
                    if loaded.is_ok() {
                        log.push(format!(
                            "IP-Adapter {} with image encoder {}: loaded in {:.1} s",
                            pair.0.display(),
                            pair.1.display(),
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    self.ip_adapters.insert(pair.clone(), loaded.map(Arc::new));
                }
                match &self.ip_adapters[pair] {
                    Ok(models) => Some(models.clone()),
                    Err(reason) => {
                        return Err(Unready::Asset { field: "ip_adapter", reason: reason.clone() });
                    }
                }
            }
        };
        let engine = match self.cache.iter_mut().find(|(e, _)| e.path() == path) {
            Some((cached, _)) => cached,
            None => &mut self.default,
        };
        if let Some(refiner) = refiner {
            engine.set_refiner(Some(refiner)).map_err(|e| refiner_error(e.to_string()))?;
        }
        engine.set_vae(vae).map_err(|e| Unready::Asset { field: "vae", reason: e.to_string() })?;
        engine
            .set_controlnet(controlnet)
            .map_err(|e| Unready::Asset { field: "controlnet", reason: e.to_string() })?;
        engine
            .set_ip_adapter(ip_adapter)
            .map_err(|e| Unready::Asset { field: "ip_adapter", reason: e.to_string() })?;
        engine.set_textual_inversions(&embeddings).map_err(|e| embedding_error(e.to_string()))?;
        let reports = engine.set_loras(&set).map_err(|e| lora_error(e.to_string()))?;
        for report in reports {
            let note = (!report.unmapped.is_empty()).then(|| {
                format!(
                    "LoRA {}: {} of its keys name no weight of this model and were not applied: {}",
                    report.path.display(),
                    report.unmapped.len(),
                    report.unmapped.join(", ")
                )
            });
            let key = (path.to_path_buf(), report.path.clone());
            if !self.lora_notes.contains_key(&key) {
                log.push(note.clone().unwrap_or_else(|| {
                    format!("LoRA {}: merged into {} modules", report.path.display(), report.applied)
                }));
            }
            self.lora_notes.insert(key, note);
        }
        let warnings = loras
            .iter()
            .filter_map(|(file, _)| {
                self.lora_notes.get(&(path.to_path_buf(), file.clone())).cloned().flatten()
            })
            .collect();
        let engine = match self.cache.iter().find(|(e, _)| e.path() == path) {
            Some((cached, _)) => cached,
            None => &self.default,
        };
        Ok(Ready { engine, warnings, log })
    }

    /// Makes the checkpoint at `path` ready: the default, a cached asset (now the most
    /// recently used), or loaded after evicting the least recently used assets its weights need
    /// room from.
    fn load(&mut self, path: &Path) -> Result<(), String> {
        if path == self.default.path() {
            return Ok(());
        }
        if let Some(reason) = self.failed.get(path) {
            return Err(reason.clone());
        }
        if let Some(i) = self.cache.iter().position(|(e, _)| e.path() == path) {
            let entry = self.cache.remove(i);
            self.cache.push(entry);
            return Ok(());
        }
        let need = Checkpoint::open_with(path, &self.open).map_or(0, |c| weight_bytes(&c, self.dtype));
        while !self.cache.is_empty() && self.cached_bytes() + need > self.budget {
            self.cache.remove(0); // frees its weights before the next load
        }
        let started = Instant::now();
        match Engine::load_with(path, &self.open, self.dtype, self.device) {
            Ok(engine) => {
                self.loads
                    .push(ModelLoad { path: path.to_path_buf(), seconds: started.elapsed().as_secs_f64() });
                self.cache.push((engine.with_long_prompts(self.default.long_prompts()), need));
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                self.failed.insert(path.to_path_buf(), reason.clone());
                Err(reason)
            }
        }
    }

    fn cached_bytes(&self) -> u64 {
        self.cache.iter().map(|(_, bytes)| bytes).sum()
    }

    /// The asset checkpoints loaded so far, with their load times.
    pub fn loads(&self) -> &[ModelLoad] {
        &self.loads
    }
}

/// Opens `file` into `opened` unless it is there already (a file that fails stays failed).
fn open_once<T>(
    opened: &mut HashMap<PathBuf, Result<T, String>>,
    file: &Path,
    open: impl FnOnce(&Path) -> Result<T, String>,
) {
    if !opened.contains_key(file) {
        opened.insert(file.to_path_buf(), open(file));
    }
}

/// The bytes `ckpt`'s weights take loaded as `dtype`.
fn weight_bytes(ckpt: &Checkpoint, dtype: DType) -> u64 {
    let params: u64 = ckpt.components().iter().map(|c| ckpt.parameters(c.component)).sum();
    params * dtype.size_in_bytes() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures")).join(path)
    }

    /// Loads `order` in turn with `budget` and returns the file names of the loads made.
    fn loads(order: &[&Path], budget: u64) -> Vec<String> {
        let default = Engine::load(&fixture("tiny/sdxl"), DType::F32, Device::Cpu).unwrap();
        let mut models = Models::new(default, DType::F32, Device::Cpu, OpenOptions::default(), budget);
        for path in order {
            assert!(models.engine(path, &AssetSet::default(), false).is_ok(), "{}", path.display());
        }
        models.loads().iter().map(|l| l.path.file_name().unwrap().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn assets_stay_cached_within_the_budget_and_the_least_recent_goes_first() {
        let (a, b, default) =
            (fixture("tiny/sd15"), fixture("pipeline/models/sd15_inpaint"), fixture("tiny/sdxl"));
        let order = [a.as_path(), b.as_path(), default.as_path(), a.as_path(), b.as_path()];
        // Room for both: each loads once; the default never loads again.
        assert_eq!(loads(&order, u64::MAX), ["sd15", "sd15_inpaint"]);
        // Room for one: alternating reloads, one engine is always allowed.
        assert_eq!(loads(&order, 1), ["sd15", "sd15_inpaint", "sd15", "sd15_inpaint"]);
        // Room for about one and a half: b evicts a, then a evicts b.
        let one = Checkpoint::open(&a).map(|c| weight_bytes(&c, DType::F32)).unwrap();
        assert_eq!(loads(&[&a, &b, &b, &a], one + one / 2), ["sd15", "sd15_inpaint", "sd15"]);
    }
}
