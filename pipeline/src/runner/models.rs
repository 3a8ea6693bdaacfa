//! The run's checkpoints: the `--model` engine, loaded at the start and kept, and the `--assets`
//! checkpoints requests name, loaded when their first group renders. Groups come clustered by
//! model (see [`super::batch::cluster_by`]), so each asset is loaded once and only one is held at
//! a time; one that fails to load is not tried again. Within a model, groups come clustered by
//! LoRA set, merged into the engine before the group renders (and undone, bit for bit, when the
//! next group wants another set).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::OpenOptions;
use kiln_runtime::{DType, Device};

use crate::generate::Engine;
use crate::lora::{LoraFile, WeightedLora};
use crate::models::ModelFacts;

/// The default engine and the asset checkpoints met so far.
#[derive(Debug)]
pub struct Models {
    default: Engine,
    dtype: DType,
    device: Device,
    /// How asset checkpoints are opened (the weight check).
    open: OpenOptions,
    /// Facts of asset checkpoints, read from their headers (cheap: no weights loaded).
    facts: HashMap<PathBuf, Result<ModelFacts, String>>,
    /// The asset engine in use.
    current: Option<Engine>,
    /// Asset checkpoints that failed to load, with why.
    failed: HashMap<PathBuf, String>,
    /// LoRA files opened so far (memory-mapped), or why one cannot be opened.
    lora_files: HashMap<PathBuf, Result<LoraFile, String>>,
    /// What merging each LoRA into each model reported: (model, LoRA) -> warning, if any.
    lora_notes: HashMap<(PathBuf, PathBuf), Option<String>>,
}

/// Why a group has no engine to render with.
#[derive(Debug)]
pub enum Unready {
    /// The checkpoint cannot be loaded: its requests are left for a rerun.
    Checkpoint(String),
    /// A LoRA of the set cannot be merged, or the VAE cannot be loaded: an error record on
    /// `field` for each request of the group.
    Asset {
        /// The request field naming the asset (`loras`, `vae`).
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
    /// with `open`.
    pub fn new(default: Engine, dtype: DType, device: Device, open: OpenOptions) -> Models {
        Models {
            default,
            dtype,
            device,
            open,
            facts: HashMap::new(),
            current: None,
            failed: HashMap::new(),
            lora_files: HashMap::new(),
            lora_notes: HashMap::new(),
        }
    }

    /// The `--model` checkpoint's path.
    pub fn default_path(&self) -> &Path {
        self.default.path()
    }

    /// The facts of the checkpoint at `path` (requests are resolved against them); an asset
    /// without every component its family needs is an error here, before anything renders.
    pub fn facts(&mut self, path: &Path) -> Result<ModelFacts, String> {
        if path == self.default.path() {
            return Ok(self.default.facts());
        }
        self.facts
            .entry(path.to_path_buf())
            .or_insert_with(|| ModelFacts::read(path).map_err(|e| e.to_string()))
            .clone()
    }

    /// The engine for the checkpoint at `path` with `loras` merged (each file with its weight's
    /// bits) and `vae` in place of its own, loading the checkpoint (and dropping the previous
    /// asset) if needed.
    pub fn engine(
        &mut self,
        path: &Path,
        loras: &[(PathBuf, u32)],
        vae: Option<&Path>,
    ) -> Result<Ready<'_>, Unready> {
        let lora_error = |reason: String| Unready::Asset { field: "loras", reason };
        self.load(path).map_err(Unready::Checkpoint)?;
        let mut log = Vec::new();
        for (file, _) in loras {
            if !self.lora_files.contains_key(file) {
                let opened = LoraFile::open(file).map_err(|e| e.to_string());
                self.lora_files.insert(file.clone(), opened);
            }
        }
        let mut set = Vec::with_capacity(loras.len());
        for (file, weight) in loras {
            match &self.lora_files[file] {
                Ok(opened) => set.push(WeightedLora { file: opened, weight: f32::from_bits(*weight) }),
                Err(reason) => return Err(lora_error(reason.clone())),
            }
        }
        let engine = match &mut self.current {
            Some(current) if path != self.default.path() => current,
            _ => &mut self.default,
        };
        engine.set_vae(vae).map_err(|e| Unready::Asset { field: "vae", reason: e.to_string() })?;
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
        let engine = match &self.current {
            Some(current) if path != self.default.path() => current,
            _ => &self.default,
        };
        Ok(Ready { engine, warnings, log })
    }

    /// Loads the checkpoint at `path` as the current asset (dropping the previous one) unless
    /// it is the default or already loaded.
    fn load(&mut self, path: &Path) -> Result<(), String> {
        if path == self.default.path() {
            return Ok(());
        }
        if let Some(reason) = self.failed.get(path) {
            return Err(reason.clone());
        }
        if self.current.as_ref().is_none_or(|e| e.path() != path) {
            self.current = None; // free the previous asset before loading the next
            match Engine::load_with(path, &self.open, self.dtype, self.device) {
                Ok(engine) => self.current = Some(engine.with_long_prompts(self.default.long_prompts())),
                Err(e) => {
                    let reason = e.to_string();
                    self.failed.insert(path.to_path_buf(), reason.clone());
                    return Err(reason);
                }
            }
        }
        Ok(())
    }
}
