//! `kiln render --device cuda --dtype bf16` of `examples/requests.jsonl` with the demo model,
//! compared image by image with the CPU's renders of the same file in f32 and in bf16. In CI the
//! CUDA device is the software GPU (softgpu/), so this runs every kernel, cuBLASLt call and
//! launch of a whole render. Without a GPU it skips, unless `KILN_REQUIRE_GPU=1`.
//!
//! The bound comes from the CPU backend (the reference) at the same precision: bf16 storage
//! alone moves the demo model's noise-like images by a few levels from the f32 render, so the
//! CUDA images may be at most [`MEAN_FACTOR`] times as far from the f32 render on average as
//! the CPU's bf16 images are (plus [`MEAN_SLACK`] levels), and their largest difference at most
//! [`MAX_FACTOR`] times the CPU bf16 one (plus [`MAX_SLACK`]). A wrong kernel moves whole
//! regions by tens of levels and fails both.
#![cfg(feature = "cuda")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MEAN_FACTOR: f64 = 1.25;
const MEAN_SLACK: f64 = 0.5;
const MAX_FACTOR: f64 = 1.5;
const MAX_SLACK: f64 = 8.0;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/requests.jsonl");

fn render(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("KILN_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-render-cuda-cache"))
        .arg("render")
        .arg(EXAMPLES)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Each response's decoded images, by id.
fn images(out: &Path) -> HashMap<String, Vec<image::RgbImage>> {
    common::records(out).iter().map(|(id, record)| (id.clone(), common::pixels(record))).collect()
}

/// (mean, max) channel difference of two images, in 8-bit levels.
fn diff(a: &image::RgbImage, b: &image::RgbImage) -> (f64, u8) {
    let diffs: Vec<u8> = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).collect();
    let max = diffs.iter().copied().max().unwrap_or(0);
    (diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len().max(1) as f64, max)
}

#[test]
fn examples_render_on_cuda_in_bf16_like_the_cpu_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let (gpu_out, cpu_out): (PathBuf, PathBuf) = (dir.path().join("cuda"), dir.path().join("cpu"));
    let cpu16_out = dir.path().join("cpu-bf16");
    let gpu = render(&gpu_out, &["--device", "cuda", "--dtype", "bf16"]);
    let gpu_err = String::from_utf8_lossy(&gpu.stderr);
    if gpu.status.code() == Some(2) && gpu_err.contains("is unavailable") {
        kiln_runtime::cuda::skip_gpu_test("kiln render --device cuda", &gpu_err);
        return;
    }
    assert_eq!(gpu.status.code(), Some(0), "kiln render --device cuda failed:\n{gpu_err}");
    for (out, dtype) in [(&cpu_out, "f32"), (&cpu16_out, "bf16")] {
        let cpu = render(out, &["--dtype", dtype]);
        assert_eq!(cpu.status.code(), Some(0), "{}", String::from_utf8_lossy(&cpu.stderr));
    }

    let (gpu, cpu, cpu16) = (images(&gpu_out), images(&cpu_out), images(&cpu16_out));
    assert_eq!(gpu.len(), 5, "one response per request");
    let mut failures = Vec::new();
    for (id, want) in &cpu {
        let (got, reference) = (&gpu[id], &cpu16[id]);
        assert_eq!(got.len(), want.len(), "{id}: image count");
        for (k, ((g, w), r)) in got.iter().zip(want).zip(reference).enumerate() {
            assert_eq!(g.dimensions(), w.dimensions(), "{id} image {k}");
            let (mean, max) = diff(g, w);
            let (ref_mean, ref_max) = diff(r, w);
            let (vs_ref_mean, vs_ref_max) = diff(g, r);
            eprintln!(
                "{id} image {k}: vs cpu f32: cuda bf16 mean {mean:.3} max {max}, cpu bf16 mean {ref_mean:.3} \
                 max {ref_max}; cuda bf16 vs cpu bf16: mean {vs_ref_mean:.3} max {vs_ref_max}"
            );
            if mean > MEAN_FACTOR * ref_mean + MEAN_SLACK
                || max as f64 > MAX_FACTOR * ref_max as f64 + MAX_SLACK
            {
                failures.push(format!(
                    "{id} image {k}: cuda bf16 mean {mean:.3} max {max}, cpu bf16 mean {ref_mean:.3} max {ref_max}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "bf16 images differ from the f32 CPU render:\n{}", failures.join("\n"));
}
