//! The run's checkpoints: the `--model` engine, loaded at the start and kept, and the `--assets`
//! checkpoints requests name, loaded when their first group renders. Groups come clustered by
//! model (see [`super::batch::cluster_by`]), so each asset is loaded once and only one is held at
//! a time; one that fails to load is not tried again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::OpenOptions;
use kiln_runtime::{DType, Device};

use crate::generate::Engine;
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
}

impl Models {
    /// Starts with the loaded `--model` engine; assets load in `dtype` on `device`, opened
    /// with `open`.
    pub fn new(default: Engine, dtype: DType, device: Device, open: OpenOptions) -> Models {
        Models { default, dtype, device, open, facts: HashMap::new(), current: None, failed: HashMap::new() }
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

    /// The engine for the checkpoint at `path`, loading it (and dropping the previous asset) if
    /// needed.
    pub fn engine(&mut self, path: &Path) -> Result<&Engine, String> {
        if path == self.default.path() {
            return Ok(&self.default);
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
        self.current.as_ref().ok_or_else(|| "no engine".to_owned())
    }
}
