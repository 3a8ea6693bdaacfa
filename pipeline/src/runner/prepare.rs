//! One validation for every front end: a parsed [`Request`] to a [`Prepared`] request (its
//! checkpoint and assets found in the library, resolved against the model's facts, the refiner's
//! use settled) or why not. `kiln render` and `kiln serve` both prepare requests here, so a line
//! and an HTTP body get the same checks and the same 422 body.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::assets::{self, AssetKind};
use super::records;
use crate::generate::BatchKey;
use crate::models::ModelFacts;
use crate::request::{RefinerUse, Request, RequestError, Resolved};

/// A request that passed validation, with the files it renders with: what batches are made of.
#[derive(Debug)]
pub struct Prepared {
    /// The request's id (its line number, or a server's counter, when it has none).
    pub id: String,
    /// The checkpoint it renders with.
    pub(crate) model: PathBuf,
    /// The LoRAs, VAE, embeddings, ControlNet and IP-Adapter it asks for.
    pub(crate) assets: AssetSet,
    pub(crate) resolved: Resolved,
    /// What its response's `warnings` say besides the render's own (no refiner configured).
    pub(crate) warnings: Vec<String>,
    /// Left `use_refiner` out on SDXL with no refiner configured: renders with the base alone.
    pub(crate) without_refiner: bool,
}

/// What must match for two requests to share an engine call: the checkpoint, the asset set and
/// the job's [`BatchKey`] (size, sampler, steps, mode; known before any image is decoded).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PreparedKey(pub(crate) PathBuf, pub(crate) AssetSet, pub(crate) BatchKey);

impl Prepared {
    /// Its batch key: requests with equal keys render in one engine call.
    pub fn key(&self) -> PreparedKey {
        let r = &self.resolved;
        let init = r.init_image.as_ref().map(|_| (r.strength, r.mask_image.is_some()));
        PreparedKey(self.model.clone(), self.assets.clone(), r.job.batch_key_with_init(init))
    }

    /// The number of images it asks for.
    pub fn images(&self) -> usize {
        self.resolved.job.images()
    }

    /// The checkpoint it renders with.
    pub fn checkpoint(&self) -> &Path {
        &self.model
    }
}

/// What a request adds to its checkpoint, resolved to files: part of its batch key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct AssetSet {
    /// LoRA files and their weights (as bits, so the set can be a key), in the request's (name)
    /// order.
    pub loras: Vec<(PathBuf, u32)>,
    /// The VAE replacing the checkpoint's own.
    pub vae: Option<PathBuf>,
    /// Textual-inversion files and their trigger words, in the request's (name) order.
    pub embeddings: Vec<(PathBuf, String)>,
    /// The ControlNet of a ControlNet request.
    pub controlnet: Option<PathBuf>,
    /// The IP-Adapter of an IP-Adapter request and the image encoder it reads images with.
    pub ip_adapter: Option<(PathBuf, PathBuf)>,
}

/// Why a request was not prepared.
#[derive(Clone, Debug)]
pub enum Refusal {
    /// Something in the request is wrong: OctoAI's 422 body.
    Invalid(RequestError),
    /// The checkpoint it names cannot be opened or lacks a component: the file is at fault, not
    /// the request (the runner leaves such lines for a rerun; a server answers 500).
    Unusable {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<RequestError> for Refusal {
    fn from(error: RequestError) -> Refusal {
        Refusal::Invalid(error)
    }
}

/// Prepares requests against one default model and one asset library. Cheap to clone and safe to
/// share between threads: checkpoint facts read from headers are cached for every clone.
#[derive(Clone, Debug)]
pub struct Validator {
    library: Option<PathBuf>,
    default_path: PathBuf,
    default_facts: ModelFacts,
    refiner: bool,
    /// Facts of asset checkpoints (no weights loaded), or why a checkpoint cannot be used.
    facts: Arc<Mutex<HashMap<PathBuf, Result<ModelFacts, String>>>>,
}

impl Validator {
    /// Requests without `checkpoint` render with the model at `default_path` (with `default_facts`);
    /// names are looked up in `library`; `refiner` says whether an SDXL refiner is configured.
    pub fn new(
        library: Option<PathBuf>,
        default_path: PathBuf,
        default_facts: ModelFacts,
        refiner: bool,
    ) -> Validator {
        Validator { library, default_path, default_facts, refiner, facts: Default::default() }
    }

    /// The facts of the checkpoint at `path` (requests are resolved against them); an asset
    /// without every component its family needs is refused here, before anything renders.
    fn facts(&self, path: &Path) -> Result<ModelFacts, String> {
        if path == self.default_path {
            return Ok(self.default_facts.clone());
        }
        let mut facts = self.facts.lock().unwrap_or_else(PoisonError::into_inner);
        facts
            .entry(path.to_path_buf())
            .or_insert_with(|| ModelFacts::read(path).map_err(|e| e.to_string()))
            .clone()
    }

    /// The default model's facts.
    pub fn default_facts(&self) -> &ModelFacts {
        &self.default_facts
    }

    /// Checks `request` (with id `id`) against its checkpoint and the library.
    pub fn prepare(&self, id: String, request: Request) -> Result<Prepared, Refusal> {
        let model = match &request.checkpoint {
            None => self.default_path.clone(),
            Some(name) => assets::find_checkpoint(self.library.as_deref(), name)
                .map_err(|e| records::field_error("checkpoint", e))?,
        };
        let assets = find_assets(self.library.as_deref(), &request)?;
        let facts =
            self.facts(&model).map_err(|reason| Refusal::Unusable { checkpoint: model.clone(), reason })?;
        let mut resolved = request.resolve(facts)?;
        let mut warnings = Vec::new();
        let mut without_refiner = false;
        match resolved.refiner {
            RefinerUse::Requested { high_noise_frac } | RefinerUse::Default { high_noise_frac }
                if self.refiner =>
            {
                resolved.job.refiner_at = Some(high_noise_frac);
            }
            RefinerUse::Requested { .. } => {
                return Err(records::field_error("use_refiner", NO_REFINER).into());
            }
            RefinerUse::Default { .. } => {
                warnings.push(BASE_ALONE.to_string());
                without_refiner = true;
            }
            RefinerUse::Off => {}
        }
        Ok(Prepared { id, model, assets, resolved, warnings, without_refiner })
    }
}

/// Why a request with `use_refiner: true` cannot run without a refiner, and how to give one.
pub(crate) const NO_REFINER: &str = "no SDXL refiner is configured: pass --refiner PATH (a single file or diffusers \
                          folder of the SDXL refiner) or put one at checkpoints/sdxl-refiner in the --assets \
                          library; or send use_refiner: false";

/// The warning of an SDXL request left to OctoAI's `use_refiner` default without a refiner.
const BASE_ALONE: &str = "use_refiner defaults to true, but no SDXL refiner is configured (--refiner PATH, or \
                          checkpoints/sdxl-refiner in --assets): rendered with the base model alone";

/// The files of a request's `loras`, `vae`, `textual_inversions` and ControlNet; an unknown name
/// is an error on its field (`loras.NAME`, `vae`, `textual_inversions.NAME`, `controlnet`).
pub(crate) fn find_assets(library: Option<&Path>, request: &Request) -> Result<AssetSet, RequestError> {
    let loras = request
        .loras
        .iter()
        .map(|(name, weight)| match assets::find(library, AssetKind::Lora, name) {
            Ok(path) => Ok((path, (*weight as f32).to_bits())),
            Err(e) => Err(records::field_error_at(&["loras", name], e)),
        })
        .collect::<Result<_, _>>()?;
    let vae = match &request.vae {
        None => None,
        Some(name) => {
            Some(assets::find(library, AssetKind::Vae, name).map_err(|e| records::field_error("vae", e))?)
        }
    };
    let embeddings = request
        .textual_inversions
        .iter()
        .map(|(name, trigger)| match assets::find(library, AssetKind::Embedding, name) {
            Ok(path) => Ok((path, trigger.clone())),
            Err(e) => Err(records::field_error_at(&["textual_inversions", name], e)),
        })
        .collect::<Result<_, _>>()?;
    let controlnet = match &request.control {
        None => None,
        Some(control) => Some(
            assets::find(library, AssetKind::ControlNet, control.name())
                .map_err(|e| records::field_error("controlnet", e))?,
        ),
    };
    let ip_adapter = match &request.ip {
        None => None,
        Some(ip) => {
            let adapter = assets::find(library, AssetKind::IpAdapter, ip.name())
                .map_err(|e| records::field_error("ip_adapter", e))?;
            let encoder = assets::image_encoder_for(library, &adapter)
                .map_err(|e| records::field_error("ip_adapter", e))?;
            Some((adapter, encoder))
        }
    };
    Ok(AssetSet { loras, vae, embeddings, controlnet, ip_adapter })
}
