//! `--assets DIR`: the checkpoints a request can name with `"checkpoint": NAME`
//! (`DIR/checkpoints/NAME.safetensors` or the diffusers folder `DIR/checkpoints/NAME`).

use std::path::{Path, PathBuf};

/// Why a request's `checkpoint` does not name a usable checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    /// The run has no `--assets` directory.
    #[error("checkpoint {name:?} requested but no --assets directory was given")]
    NoAssets {
        /// The requested name.
        name: String,
    },
    /// The name could escape the assets directory (a path separator, `..`, or empty).
    #[error("checkpoint {name:?} is not a plain name")]
    BadName {
        /// The requested name.
        name: String,
    },
    /// The name is a symlink (or inside a symlinked folder) that leads out of the assets
    /// directory: a request must not be able to read files the library does not hold.
    #[error(
        "checkpoint {name:?} leads outside the assets directory {assets} (a symlink to {target}); \
         move or hard-link the checkpoint into {assets}/checkpoints instead"
    )]
    OutsideAssets {
        /// The requested name.
        name: String,
        /// The assets directory.
        assets: PathBuf,
        /// Where the name leads.
        target: PathBuf,
    },
    /// Nothing by that name.
    #[error("unknown checkpoint {name:?}: {dir} has {}", available_list(.available))]
    Unknown {
        /// The requested name.
        name: String,
        /// The checkpoints directory searched.
        dir: PathBuf,
        /// The names it holds, sorted.
        available: Vec<String>,
    },
}

fn available_list(names: &[String]) -> String {
    if names.is_empty() { "no checkpoints".to_owned() } else { names.join(", ") }
}

/// Finds the checkpoint `name` under `assets/checkpoints`: a diffusers folder or single file
/// with exactly that name, else `name.safetensors`.
pub fn find_checkpoint(assets: Option<&Path>, name: &str) -> Result<PathBuf, AssetError> {
    let assets = assets.ok_or_else(|| AssetError::NoAssets { name: name.to_owned() })?;
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(AssetError::BadName { name: name.to_owned() });
    }
    let dir = assets.join("checkpoints");
    let exact = dir.join(name);
    let file = dir.join(format!("{name}.safetensors"));
    let found = if exact.exists() {
        exact
    } else if file.exists() {
        file
    } else {
        return Err(AssetError::Unknown { name: name.to_owned(), available: list_checkpoints(&dir), dir });
    };
    inside_assets(assets, name, found)
}

/// `found` when it resolves to a path inside `assets` (symlinks followed).
fn inside_assets(assets: &Path, name: &str, found: PathBuf) -> Result<PathBuf, AssetError> {
    let outside = |target: PathBuf| AssetError::OutsideAssets {
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

/// The names under `dir`: folders as they are, `.safetensors` files without the extension.
fn list_checkpoints(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            if entry.path().is_dir() {
                Some(name)
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
fn fnv1a(bytes: &[u8]) -> u64 {
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

        let err = find_checkpoint(assets, "missing").unwrap_err();
        assert_eq!(
            err,
            AssetError::Unknown {
                name: "missing".into(),
                dir: dir.clone(),
                available: vec!["dreamshaper".into(), "juggernaut".into()]
            }
        );
        let message = err.to_string();
        assert!(message.contains("\"missing\"") && message.contains("dreamshaper, juggernaut"), "{message}");
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
