//! `--assets DIR`: the library of assets requests name. Each kind has its folder:
//! `checkpoints/` (`"checkpoint": NAME`), `loras/` (`"loras": {NAME: weight}`), `embeddings/`
//! (`"textual_inversions"`) and `vaes/` (`"vae"`); `controlnets/` and `ip_adapters/` are kept
//! for later. NAME is a `.safetensors` file with or without its extension, or, for checkpoints
//! and VAEs, a diffusers folder. OctoAI's `octoai:` prefix resolves in the same library:
//! `octoai:lightning_sdxl` is the user's own `lightning_sdxl`. Names never leave the library.

use std::fmt;

use kiln_runtime::checkpoint::{Checkpoint, SafetensorsFile};
use std::path::{Path, PathBuf};

/// A kind of asset, with its folder in the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssetKind {
    /// A whole model: `checkpoints/`.
    Checkpoint,
    /// A LoRA or LyCORIS file: `loras/`.
    Lora,
    /// A textual-inversion embedding: `embeddings/`.
    Embedding,
    /// An autoencoder: `vaes/`.
    Vae,
    /// A ControlNet: `controlnets/`.
    ControlNet,
    /// An IP-Adapter: `ip_adapters/`.
    IpAdapter,
    /// A CLIP vision tower for IP-Adapters: `image_encoders/`.
    ImageEncoder,
}

impl AssetKind {
    /// The library folder holding this kind.
    pub fn folder(self) -> &'static str {
        match self {
            AssetKind::Checkpoint => "checkpoints",
            AssetKind::Lora => "loras",
            AssetKind::Embedding => "embeddings",
            AssetKind::Vae => "vaes",
            AssetKind::ControlNet => "controlnets",
            AssetKind::IpAdapter => "ip_adapters",
            AssetKind::ImageEncoder => "image_encoders",
        }
    }

    /// Whether a diffusers folder can be an asset of this kind (else only single files).
    fn may_be_folder(self) -> bool {
        matches!(
            self,
            AssetKind::Checkpoint | AssetKind::Vae | AssetKind::ControlNet | AssetKind::ImageEncoder
        )
    }
}

impl fmt::Display for AssetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AssetKind::Checkpoint => "checkpoint",
            AssetKind::Lora => "LoRA",
            AssetKind::Embedding => "textual inversion",
            AssetKind::Vae => "VAE",
            AssetKind::ControlNet => "ControlNet",
            AssetKind::IpAdapter => "IP-Adapter",
            AssetKind::ImageEncoder => "image encoder",
        })
    }
}

/// Why a request's name does not name a usable asset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    /// The run has no `--assets` directory.
    #[error("{kind} {name:?} requested but no --assets directory was given")]
    NoAssets {
        /// What was asked for.
        kind: AssetKind,
        /// The requested name.
        name: String,
    },
    /// The name could escape the assets directory (a path separator, `..`, or empty).
    #[error("{kind} {name:?} is not a plain name")]
    BadName {
        /// What was asked for.
        kind: AssetKind,
        /// The requested name.
        name: String,
    },
    /// The name is a symlink (or inside a symlinked folder) that leads out of the assets
    /// directory: a request must not be able to read files the library does not hold.
    #[error(
        "{kind} {name:?} leads outside the assets directory {assets} (a symlink to {target}); \
         move or hard-link the file into {assets}/{} instead", kind.folder()
    )]
    OutsideAssets {
        /// What was asked for.
        kind: AssetKind,
        /// The requested name.
        name: String,
        /// The assets directory.
        assets: PathBuf,
        /// Where the name leads.
        target: PathBuf,
    },
    /// Nothing by that name.
    #[error("unknown {kind} {name:?}: {}", available_list(*kind, dir, available))]
    Unknown {
        /// What was asked for.
        kind: AssetKind,
        /// The requested name.
        name: String,
        /// The folder searched.
        dir: PathBuf,
        /// The names it holds, closest to the requested name first.
        available: Vec<String>,
    },
}

/// The most names an unknown-name error lists.
const NAMES_LISTED: usize = 5;

fn available_list(kind: AssetKind, dir: &Path, names: &[String]) -> String {
    match names.len() {
        0 => format!("{} has no {kind}s", dir.display()),
        n if n <= NAMES_LISTED => format!("{} has {}", dir.display(), names.join(", ")),
        n => format!("the closest of the {n} in {} are {}", dir.display(), names[..NAMES_LISTED].join(", ")),
    }
}

/// OctoAI's prefix for its hosted assets; in kiln it names the user's own.
pub const OCTOAI_PREFIX: &str = "octoai:";

/// `names` ordered by how close each is to `name` (normalised Damerau-Levenshtein distance,
/// case-insensitive), then alphabetically.
fn closest_first(name: &str, mut names: Vec<String>) -> Vec<String> {
    let name = name.to_lowercase();
    let distance = |other: &str| 1.0 - strsim::normalized_damerau_levenshtein(&name, &other.to_lowercase());
    names.sort_by(|a, b| distance(a).total_cmp(&distance(b)).then_with(|| a.cmp(b)));
    names
}

/// Finds the checkpoint `name` in the library ([`find`]).
pub fn find_checkpoint(assets: Option<&Path>, name: &str) -> Result<PathBuf, AssetError> {
    find(assets, AssetKind::Checkpoint, name)
}

/// Finds the asset `name` of `kind` under `assets/<folder>`: a file (or, for checkpoints and
/// VAEs, a diffusers folder) with exactly that name, else `name.safetensors`.
pub fn find(assets: Option<&Path>, kind: AssetKind, name: &str) -> Result<PathBuf, AssetError> {
    let assets = assets.ok_or_else(|| AssetError::NoAssets { kind, name: name.to_owned() })?;
    let requested = name;
    let name = name.strip_prefix(OCTOAI_PREFIX).unwrap_or(name);
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(AssetError::BadName { kind, name: requested.to_owned() });
    }
    let dir = assets.join(kind.folder());
    let exact = dir.join(name);
    let file = dir.join(format!("{name}.safetensors"));
    let found = if exact.exists() && (kind.may_be_folder() || !exact.is_dir()) {
        exact
    } else if file.exists() {
        file
    } else {
        let available = closest_first(name, list(kind, &dir));
        return Err(AssetError::Unknown { kind, name: requested.to_owned(), available, dir });
    };
    inside_assets(assets, kind, requested, found)
}

/// The image encoder in `assets/image_encoders/` whose image embeddings fit the IP-Adapter at
/// `adapter` (the input width of its `image_proj.proj.weight`: 1024 for ViT-H/14, 1280 for
/// ViT-bigG/14), the first by name when several do; read from headers alone.
pub fn image_encoder_for(assets: Option<&Path>, adapter: &Path) -> Result<PathBuf, String> {
    let width = SafetensorsFile::open(adapter)
        .map_err(|e| e.to_string())?
        .get("image_proj.proj.weight")
        .and_then(|t| t.shape().get(1).copied())
        .ok_or_else(|| {
            format!("{} has no image_proj.proj.weight: not a plain IP-Adapter", adapter.display())
        })?;
    let assets = assets.ok_or("no --assets directory was given")?;
    let dir = assets.join(AssetKind::ImageEncoder.folder());
    for name in list(AssetKind::ImageEncoder, &dir) {
        let Ok(path) = find(Some(assets), AssetKind::ImageEncoder, &name) else { continue };
        let fits = Checkpoint::open_image_encoder(&path)
            .ok()
            .is_some_and(|ckpt| ckpt.image_encoder_config().is_some_and(|c| c.projection_dim == width));
        if fits {
            return Ok(path);
        }
    }
    Err(format!(
        "IP-Adapter {} takes {width}-wide image embeddings (ViT-H/14 gives 1024, ViT-bigG/14 1280), and {} holds no \
         image encoder that gives them: add its CLIP vision tower (a transformers folder) there",
        adapter.display(),
        dir.display()
    ))
}

/// `found` when it resolves to a path inside `assets` (symlinks followed).
fn inside_assets(assets: &Path, kind: AssetKind, name: &str, found: PathBuf) -> Result<PathBuf, AssetError> {
    let outside = |target: PathBuf| AssetError::OutsideAssets {
        kind,
        name: name.to_owned(),
        assets: assets.to_path_buf(),
        target,
    };
    match (assets.canonicalize(), found.canonicalize()) {
        (Ok(root), Ok(target)) if target.starts_with(&root) => Ok(found),
        (Ok(_), Ok(target)) => Err(outside(target)),
        // It exists (checked by the caller) but cannot be resolved: let opening it report why.
        _ => Ok(found),
    }
}

/// The names under `dir`: folders as they are (for kinds that may be folders), `.safetensors`
/// files without the extension.
pub fn list(kind: AssetKind, dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            if entry.path().is_dir() {
                kind.may_be_folder().then_some(name)
            } else {
                name.strip_suffix(".safetensors").map(str::to_owned)
            }
        })
        .collect();
    names.sort();
    names
}

/// A file-name stem for a request id: characters other than ASCII letters, digits, `-`, `_` and
/// `.` become `_` (and a leading `.` too); when anything changed, a hash of the original id is
/// appended so that distinct ids never share a file.
pub fn file_stem(id: &str) -> String {
    let mut stem: String = id
        .chars()
        .take(100)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    if stem.starts_with('.') {
        stem.replace_range(..1, "_");
    }
    if stem != id {
        stem.push_str(&format!("-{:08x}", fnv1a(id.as_bytes()) as u32));
    }
    stem
}

/// FNV-1a: stable across runs and platforms (std's hasher is not).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_and_folders_and_lists_what_exists_otherwise() {
        let assets = tempfile::tempdir().unwrap();
        let dir = assets.path().join("checkpoints");
        std::fs::create_dir_all(dir.join("dreamshaper")).unwrap();
        std::fs::write(dir.join("juggernaut.safetensors"), b"").unwrap();
        std::fs::write(dir.join("notes.txt"), b"").unwrap();
        let assets = Some(assets.path());

        assert_eq!(find_checkpoint(assets, "dreamshaper").unwrap(), dir.join("dreamshaper"));
        assert_eq!(find_checkpoint(assets, "juggernaut").unwrap(), dir.join("juggernaut.safetensors"));
        assert_eq!(
            find_checkpoint(assets, "juggernaut.safetensors").unwrap(),
            dir.join("juggernaut.safetensors")
        );

        // OctoAI's prefix names the user's own file.
        assert_eq!(find_checkpoint(assets, "octoai:juggernaut").unwrap(), dir.join("juggernaut.safetensors"));

        let err = find_checkpoint(assets, "octoai:juggernot").unwrap_err();
        assert_eq!(
            err,
            AssetError::Unknown {
                kind: AssetKind::Checkpoint,
                name: "octoai:juggernot".into(),
                dir: dir.clone(),
                available: vec!["juggernaut".into(), "dreamshaper".into()]
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("\"octoai:juggernot\"") && message.contains("juggernaut, dreamshaper"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_name_lists_the_closest_names_first() {
        let assets = tempfile::tempdir().unwrap();
        let dir = assets.path().join("checkpoints");
        let names = [
            "sdxl_base",
            "juggernautXL_v9",
            "juggernautXL_lightning",
            "dreamshaper_8",
            "realvis",
            "animagine",
        ];
        std::fs::create_dir_all(&dir).unwrap();
        for name in names {
            std::fs::write(dir.join(format!("{name}.safetensors")), b"").unwrap();
        }
        let err = find_checkpoint(Some(assets.path()), "JuggernautXL_v8").unwrap_err().to_string();
        assert!(
            err.contains("closest of the 6") && err.contains("are juggernautXL_v9, juggernautXL_lightning"),
            "{err}"
        );
        // sdxl_base and animagine are equally far; the tie goes alphabetically, and 5 are listed.
        assert!(err.contains("animagine") && !err.contains("sdxl_base"), "{err}");
    }

    #[test]
    fn names_that_leave_the_directory_and_missing_assets_are_errors() {
        let assets = tempfile::tempdir().unwrap();
        for name in ["../x", "a/b", "..", "", "a\\b"] {
            let err = find_checkpoint(Some(assets.path()), name).unwrap_err();
            assert!(matches!(err, AssetError::BadName { .. }), "{name}: {err}");
        }
        let err = find_checkpoint(None, "dreamshaper").unwrap_err();
        assert!(err.to_string().contains("--assets"), "{err}");
        let err = find_checkpoint(Some(assets.path()), "x").unwrap_err();
        assert!(err.to_string().contains("no checkpoints"), "{err}");

        // Symlinks inside the library are followed; those leading out of it are refused.
        let checkpoints = assets.path().join("checkpoints");
        std::fs::create_dir_all(checkpoints.join("real")).unwrap();
        std::os::unix::fs::symlink(checkpoints.join("real"), checkpoints.join("alias")).unwrap();
        assert_eq!(find_checkpoint(Some(assets.path()), "alias").unwrap(), checkpoints.join("alias"));
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("passwd");
        std::fs::write(&secret, "root:x:0:0").unwrap();
        std::os::unix::fs::symlink(&secret, checkpoints.join("x.safetensors")).unwrap();
        std::os::unix::fs::symlink(outside.path(), checkpoints.join("folder")).unwrap();
        for name in ["x", "x.safetensors", "folder"] {
            let err = find_checkpoint(Some(assets.path()), name).unwrap_err();
            assert!(matches!(err, AssetError::OutsideAssets { .. }), "{name}: {err}");
            assert!(!err.to_string().contains("root:x"), "{err}");
        }
    }

    #[test]
    fn each_kind_has_its_folder_and_only_checkpoints_and_vaes_may_be_folders() {
        let assets = tempfile::tempdir().unwrap();
        let loras = assets.path().join("loras");
        std::fs::create_dir_all(loras.join("a-folder")).unwrap();
        std::fs::write(loras.join("crayon.safetensors"), b"").unwrap();
        std::fs::create_dir_all(assets.path().join("vaes/sdxl-vae")).unwrap();
        let root = Some(assets.path());
        assert_eq!(find(root, AssetKind::Lora, "octoai:crayon").unwrap(), loras.join("crayon.safetensors"));
        assert_eq!(find(root, AssetKind::Vae, "sdxl-vae").unwrap(), assets.path().join("vaes/sdxl-vae"));
        let err = find(root, AssetKind::Lora, "a-folder").unwrap_err();
        assert_eq!(
            err,
            AssetError::Unknown {
                kind: AssetKind::Lora,
                name: "a-folder".into(),
                dir: loras,
                available: vec!["crayon".into()]
            }
        );
        assert!(err.to_string().starts_with("unknown LoRA \"a-folder\""), "{err}");
        let err = find(root, AssetKind::Embedding, "x").unwrap_err().to_string();
        assert!(err.contains("has no textual inversions"), "{err}");
        let err = find(None, AssetKind::Vae, "x").unwrap_err().to_string();
        assert!(err.starts_with("VAE \"x\" requested but no --assets"), "{err}");
    }

    #[test]
    fn file_stems_are_safe_and_distinct() {
        assert_eq!(file_stem("fox-2_b.v1"), "fox-2_b.v1");
        assert_eq!(file_stem("12"), "12");
        let spaced = file_stem("a b");
        assert!(spaced.starts_with("a_b-") && spaced.len() == 12, "{spaced}");
        assert_ne!(file_stem("a b"), file_stem("a/b"));
        assert_ne!(file_stem("a_b"), file_stem("a b"));
        let sneaky = file_stem("../../etc/passwd");
        assert!(!sneaky.contains('/') && !sneaky.starts_with('.'), "{sneaky}");
        assert!(file_stem("é").is_ascii());
        assert!(file_stem(&"x".repeat(500)).len() < 120);
        assert_eq!(file_stem("a b"), file_stem("a b"), "stable");
    }
}
