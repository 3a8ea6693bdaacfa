//! The random full-size weights both engines load: a diffusers folder written from kiln's
//! committed key manifest by `Manifest::materialize_random`, with random values in the one file
//! the case calls (the UNet's or the VAE's) and sparse zeros elsewhere. Both engines open the
//! same file, so their weights are bit-identical.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use kiln_runtime::checkpoint::manifest::{Manifest, RandomFill};

use crate::cases::{Case, Part, Precision};

/// The fixed seed of every weight (the same seed gives the same weights across runs).
const SEED: u64 = 0x6b69_6c6e_7065_6572;

/// A marker written once a folder is complete, so `--keep-weights` reuses only finished ones.
const DONE: &str = ".kiln-peer-complete";

/// Where the manifests live, relative to this crate.
const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/manifests");

/// A materialized diffusers folder; removed on drop unless it was asked to be kept.
pub struct WeightsDir {
    /// The diffusers folder (what `Checkpoint::open` takes).
    pub root: PathBuf,
    /// The random file (what candle's builders take).
    pub file: PathBuf,
    remove_on_drop: bool,
}

impl Drop for WeightsDir {
    fn drop(&mut self) {
        if self.remove_on_drop
            && let Err(e) = std::fs::remove_dir_all(&self.root)
        {
            eprintln!("kiln-peer: could not remove {}: {e}", self.root.display());
        }
    }
}

/// Whether tensor `name` of manifest file `file` gets random values for `case`.
///
/// SDXL's `add_embedding.*` (the pooled-text and time-id MLP) stays zero: candle's UNet has no
/// added conditioning, and with that MLP's weights and biases zero kiln's added embedding is
/// exactly 0, so both engines compute the same function (kiln still runs the small MLP).
fn keep(case: &Case, file: &str, name: &str) -> bool {
    file == case.part.weights_file() && !(case.part == Part::Unet && name.starts_with("add_embedding."))
}

/// Writes (or, under `keep_dir`, reuses) the weights of `case` stored as `precision`.
pub fn materialize(case: &Case, precision: Precision, keep_dir: Option<&Path>) -> anyhow::Result<WeightsDir> {
    let folder = format!("{}-{precision}", case.name);
    let root = match keep_dir {
        Some(dir) => dir.join(&folder),
        None => std::env::temp_dir().join(format!("kiln-peer-{}-{folder}", std::process::id())),
    };
    let file = root.join(case.part.weights_file());
    let out = WeightsDir { root: root.clone(), file, remove_on_drop: keep_dir.is_none() };
    if keep_dir.is_some() && root.join(DONE).is_file() {
        eprintln!("{}: reusing weights in {}", case.name, root.display());
        return Ok(out);
    }
    let manifest_path = Path::new(MANIFESTS).join(case.model.manifest());
    let manifest = Manifest::read(&manifest_path)?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let keep = |file: &str, name: &str| keep(case, file, name);
    let fill = RandomFill { seed: SEED, keep: &keep, dtype: Some(precision.stored()) };
    let t = Instant::now();
    manifest.materialize_random(&root, &fill)?;
    let bytes = std::fs::metadata(&out.file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{} {precision}: wrote {:.2} GB of random weights to {} in {:.1} s",
        case.name,
        bytes as f64 / 1e9,
        out.file.display(),
        t.elapsed().as_secs_f64()
    );
    if keep_dir.is_some() {
        std::fs::write(root.join(DONE), b"")?;
    }
    Ok(out)
}
