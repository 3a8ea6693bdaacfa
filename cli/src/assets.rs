//! `kiln assets DIR`: the asset library listed, each entry with its detected kind and family
//! and whether requests can use it (and why not).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use kiln_pipeline::runner::catalog::{self, Entry};

/// Arguments of `kiln assets`.
#[derive(clap::Args)]
pub struct Args {
    /// The asset library (the folder given to `kiln render --assets`).
    dir: PathBuf,
    /// Print a JSON array instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `kiln assets`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let entries = catalog::list(&args.dir)
        .with_context(|| format!("cannot read the asset library {}", args.dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", text(&entries));
    }
    Ok(())
}

/// One block per folder: name, kind, family, then `ok` or why not, and the details.
fn text(entries: &[Entry]) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        out.push_str("no assets: the library has no checkpoints/, loras/, embeddings/ or vaes/ entries\n");
    }
    let name_width = entries.iter().map(|e| e.name.chars().count()).max().unwrap_or(0);
    let kind_width = entries.iter().map(|e| e.kind.len()).max().unwrap_or(0);
    let family_width = entries.iter().map(|e| e.family.as_deref().unwrap_or("-").len()).max().unwrap_or(0);
    let mut folder = "";
    for e in entries {
        if e.folder != folder {
            folder = e.folder;
            let _ = writeln!(out, "{folder}/");
        }
        let family = e.family.as_deref().unwrap_or("-");
        let status = if e.usable { "ok" } else { "not usable" };
        let _ = writeln!(
            out,
            "  {:name_width$}  {:kind_width$}  {:family_width$}  {status}: {}",
            e.name, e.kind, family, e.note
        );
    }
    out
}
