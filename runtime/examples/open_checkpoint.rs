//! Opens a checkpoint and reads its metadata, to measure what opening costs (time, peak memory).
//!
//! ```sh
//! cargo build --release -p kiln-runtime --example open_checkpoint
//! # a real checkpoint, or a full-size one rebuilt from a key manifest as a sparse file:
//! target/release/examples/open_checkpoint --materialize fixtures/manifests/sdxl_base.single_file.json /tmp/sdxl
//! /usr/bin/time -v target/release/examples/open_checkpoint /tmp/sdxl/sd_xl_base_1.0.safetensors
//! ```
//!
//! Opening maps the files and parses their headers only: peak RSS stays a few MB whatever the
//! checkpoint's size. With `--read NAME` it also reads one canonical tensor (as f32).

use std::path::PathBuf;
use std::time::Instant;

use kiln_runtime::DType;
use kiln_runtime::checkpoint::{Checkpoint, manifest::Manifest};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, manifest, out] if flag == "--materialize" => {
            let manifest = Manifest::read(manifest.as_ref())?;
            std::fs::create_dir_all(out)?;
            let path = manifest.materialize(out.as_ref())?;
            println!("{}", path.display());
            Ok(())
        }
        [path] => open(path.into(), None),
        [path, flag, name] if flag == "--read" => open(path.into(), Some(name)),
        _ => {
            Err("usage: open_checkpoint PATH [--read CANONICAL_NAME] | --materialize MANIFEST OUT_DIR".into())
        }
    }
}

fn open(path: PathBuf, read: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let ckpt = Checkpoint::open(&path)?;
    let opened = start.elapsed();
    let bytes: u64 = ckpt.files().iter().map(|f| f.file_len()).sum();
    let header: usize = ckpt.files().iter().map(|f| f.header_len()).sum();
    println!("{}: {} {}", path.display(), ckpt.format(), ckpt.family());
    println!(
        "  {} files, {:.2} GB, headers {} KB, {} canonical tensors, opened in {:.1} ms",
        ckpt.files().len(),
        bytes as f64 / 1e9,
        header / 1024,
        ckpt.len(),
        opened.as_secs_f64() * 1e3
    );
    for c in ckpt.components() {
        println!("  {:<15} {:>14} parameters", c.component.to_string(), c.parameters);
    }
    if let Some(name) = read {
        let t = ckpt.tensor(name, DType::F32)?;
        println!("  read {name}: {t:?}");
    }
    if let Some(hwm) = peak_rss_kb() {
        println!("  peak RSS {:.1} MB (VmHWM)", hwm as f64 / 1024.0);
    }
    Ok(())
}

/// Peak resident set size from /proc (Linux), in KB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}
