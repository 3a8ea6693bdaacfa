//! kiln's built-in demo model: a tiny SDXL-shaped model with untrained, deterministic random
//! weights, so that `kiln render` runs on any machine with no checkpoint to download.
//!
//! [`ensure_demo_model`] returns a diffusers folder (`demo-sdxl-v2/` in the cache directory)
//! that [`kiln_runtime::checkpoint::Checkpoint::open`] reads as SDXL base. It is SDXL-shaped but
//! cheap at SDXL's one-megapixel sizes: a 3-level UNet 8/16/32 wide with attention only at the
//! deepest level and the `text_time` added embedding, CLIP-L-like and OpenCLIP-G-like text
//! encoders 16 and 32 wide with the real 49408-token vocabulary and 77 positions (the tokenizers
//! are kiln's embedded ones), and a 4-level VAE 4/4/8/8 wide without mid-block attention
//! (`tools/make_demo_assets.py` has the details). A folder rather than a single file because a
//! single file carries no config: kiln would size it with the family's published 32 norm groups,
//! which the narrow widths cannot use.
//!
//! The folder is made on first use, byte-identical on every machine: built in a temporary
//! folder next to it, then renamed into place in one step, so a concurrent run or a crash never
//! leaves a half-written model under the final name. Later calls check it (file sizes, exact
//! headers and configs, and a hash of every file recorded in `kiln-demo.json`) and rebuild it
//! when anything differs.

mod facts;
mod weights;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

pub use facts::{DEMO_FAMILY, demo_facts, demo_scheduler};

/// What the CLI prints when it renders with the demo model.
pub const DEMO_NOTICE: &str = "Using kiln's built-in demo model: a tiny SDXL-shaped model with untrained, random \
     weights. It renders noise-like images, not pictures; pass --model with a real SD 1.5 or SDXL \
     checkpoint for real images.";

/// The demo folder's name inside the cache directory; the version changes with its contents.
pub const DEMO_DIR_NAME: &str = "demo-sdxl-v2";

/// The file recording each weight file's hash, written last into the folder.
const STAMP: &str = "kiln-demo.json";

/// A demo model that could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file system operation failed.
    #[error("demo model: cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`create folder`, `write`, `rename`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The folder kept failing its check after being rebuilt (another process rewriting it, or
    /// a file system that does not keep what is written).
    #[error("demo model: {path} is still not a complete demo model after rebuilding it: {reason}")]
    Unusable {
        /// The demo folder.
        path: PathBuf,
        /// The last check's finding.
        reason: String,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DemoError {
    let path = path.to_path_buf();
    move |source| DemoError::Io { action, path, source }
}

/// kiln's cache directory: `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else
/// `$HOME/.cache/kiln`, else `kiln-cache` in the system's temporary directory. Empty (and, for
/// XDG, relative) values are ignored.
pub fn default_cache_dir() -> PathBuf {
    cache_dir_from(|name| std::env::var_os(name))
}

/// [`default_cache_dir`] with the environment given as a lookup.
fn cache_dir_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("KILN_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return dir.join("kiln");
    }
    if let Some(home) = var("HOME") {
        return home.join(".cache").join("kiln");
    }
    std::env::temp_dir().join("kiln-cache")
}

/// The demo model's folder in `cache_dir`, made there first if it is missing or damaged.
pub fn ensure_demo_model(cache_dir: &Path) -> Result<PathBuf, DemoError> {
    let target = cache_dir.join(DEMO_DIR_NAME);
    remove_abandoned(cache_dir);
    let mut finding = String::new();
    // Check, and while it fails (at most 3 times) build a fresh copy and rename it into place.
    // Another process may do the same at once: whichever copy lands is checked like any other.
    for round in 0..=3 {
        match check(&target) {
            Ok(()) => return Ok(target),
            Err(f) => finding = f,
        }
        if round == 3 {
            break;
        }
        fs::create_dir_all(cache_dir).map_err(io_error("create folder", cache_dir))?;
        if target.exists() {
            discard(&target, cache_dir)?;
        }
        let staging = build(cache_dir)?;
        if let Err(e) = fs::rename(&staging, &target) {
            remove_quietly(&staging);
            // Someone else's copy got there first: it is checked next round.
            if !target.exists() {
                return Err(DemoError::Io { action: "rename into place", path: target, source: e });
            }
        }
    }
    Err(DemoError::Unusable { path: target, reason: finding })
}

/// A name for a private staging or discarded folder in `cache_dir`.
fn unique_sibling(cache_dir: &Path, what: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    cache_dir.join(format!(".{DEMO_DIR_NAME}.{what}.{}.{nanos}.{n}", std::process::id()))
}

/// Deletes staging and discarded folders left in `cache_dir` by processes that no longer run
/// (a build killed midway): each name carries its maker's pid ([`unique_sibling`]). Folders of
/// live processes, this one's included, are theirs to finish. Where `/proc` is missing, liveness
/// cannot be told and nothing is deleted.
fn remove_abandoned(cache_dir: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(cache_dir) else { return };
    let prefix = format!(".{DEMO_DIR_NAME}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
        let mut parts = rest.split('.');
        let (Some("tmp" | "stale"), Some(pid)) = (parts.next(), parts.next()) else { continue };
        if pid.parse::<u32>().is_ok() && !proc.join(pid).exists() {
            remove_quietly(&entry.path());
        }
    }
}

/// Moves a damaged folder out of the way (one atomic rename), then deletes it.
fn discard(target: &Path, cache_dir: &Path) -> Result<(), DemoError> {
    let trash = unique_sibling(cache_dir, "stale");
    match fs::rename(target, &trash) {
        Ok(()) => {
            remove_quietly(&trash);
            Ok(())
        }
        // Another process moved it already.
        Err(_) if !target.exists() => Ok(()),
        Err(e) => Err(DemoError::Io { action: "move aside", path: target.into(), source: e }),
    }
}

/// Deletes a staging or discarded folder (or a stray file that stood at the demo's name).
fn remove_quietly(path: &Path) {
    // Best effort: a leftover wastes a few MB but breaks nothing.
    let _ = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
}

/// Writes a complete demo folder under a private name in `cache_dir` and returns that name.
fn build(cache_dir: &Path) -> Result<PathBuf, DemoError> {
    let staging = unique_sibling(cache_dir, "tmp");
    let result = write_all(&staging);
    if result.is_err() {
        remove_quietly(&staging);
    }
    result.map(|()| staging)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error("create folder", parent))?;
    }
    let file = fs::File::create(path).map_err(io_error("create", path))?;
    std::io::Write::write_all(&mut &file, bytes).map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("flush", path))
}

fn write_all(dir: &Path) -> Result<(), DemoError> {
    for &(rel, text) in weights::config_files() {
        write_file(&dir.join(rel), text.as_bytes())?;
    }
    let mut hashes = Map::new();
    for file in weights::weight_files() {
        let bytes = file.bytes();
        write_file(&dir.join(file.path), &bytes)?;
        hashes.insert(file.path.into(), Value::String(format!("{:016x}", weights::fnv1a64(&bytes))));
    }
    let stamp = serde_json::json!({ "version": weights::WEIGHTS_VERSION, "fnv1a64": hashes });
    let text = serde_json::to_string_pretty(&stamp).expect("a JSON value serialises") + "\n";
    write_file(&dir.join(STAMP), text.as_bytes())
}

/// Whether `dir` is a complete, intact demo folder; otherwise what is wrong.
fn check(dir: &Path) -> Result<(), String> {
    let read = |rel: &str| fs::read(dir.join(rel)).map_err(|e| format!("{rel}: {e}"));
    for &(rel, text) in weights::config_files() {
        if read(rel)? != text.as_bytes() {
            return Err(format!("{rel} differs from kiln's"));
        }
    }
    let stamp: Value =
        serde_json::from_slice(&read(STAMP)?).map_err(|e| format!("{STAMP} is not valid JSON: {e}"))?;
    if stamp["version"] != weights::WEIGHTS_VERSION {
        return Err(format!("{STAMP} names another version"));
    }
    for file in weights::weight_files() {
        let rel = file.path;
        let len = fs::metadata(dir.join(rel)).map_err(|e| format!("{rel}: {e}"))?.len();
        if len != file.len {
            return Err(format!("{rel} has {len} bytes, not {}", file.len));
        }
        let bytes = read(rel)?;
        if !bytes.starts_with(&file.header) {
            return Err(format!("{rel} has another header"));
        }
        let hash = format!("{:016x}", weights::fnv1a64(&bytes));
        if stamp["fnv1a64"][rel] != hash.as_str() {
            return Err(format!("{rel}'s contents do not match {STAMP}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn dir_with(vars: &[(&str, &str)]) -> PathBuf {
        cache_dir_from(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v)))
    }

    #[test]
    fn folders_of_dead_builds_are_removed_and_live_ones_kept() {
        let cache = tempfile::tempdir().unwrap();
        // A pid that has exited: a child that has been waited for.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let dead = child.id();
        let name = |what: &str, pid: u32| cache.path().join(format!(".{DEMO_DIR_NAME}.{what}.{pid}.17.0"));
        let abandoned = [name("tmp", dead), name("stale", dead)];
        let ours = name("tmp", std::process::id());
        let unrelated = cache.path().join(format!(".{DEMO_DIR_NAME}.notes.{dead}.1"));
        for dir in abandoned.iter().chain([&ours, &unrelated]) {
            fs::create_dir_all(dir.join("unet")).unwrap();
            fs::write(dir.join("unet").join("config.json"), "{}").unwrap();
        }
        remove_abandoned(cache.path());
        for dir in &abandoned {
            assert!(!dir.exists(), "{} is left", dir.display());
        }
        assert!(ours.exists() && unrelated.exists(), "a live build's folder and other names stay");
    }

    #[test]
    fn cache_dir_precedence() {
        let all = [("KILN_CACHE_DIR", "/k"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(dir_with(&all), Path::new("/k"));
        assert_eq!(dir_with(&all[1..]), Path::new("/x/kiln"));
        assert_eq!(dir_with(&all[2..]), Path::new("/h/.cache/kiln"));
        // Empty values and a relative XDG_CACHE_HOME are ignored (the XDG spec says so).
        assert_eq!(
            dir_with(&[("KILN_CACHE_DIR", ""), ("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]),
            Path::new("/h/.cache/kiln")
        );
        assert_eq!(dir_with(&[]), std::env::temp_dir().join("kiln-cache"));
    }
}
