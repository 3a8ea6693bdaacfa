//! `kiln render --device cuda --dtype bf16` of `examples/requests.jsonl` with the demo model,
//! compared image by image with the CPU's f32 render of the same file. In CI the CUDA device is
//! the software GPU (softgpu/), so this runs every kernel, cuBLASLt call and launch of a whole
//! render. Without a GPU it skips, unless `KILN_REQUIRE_GPU=1`.
#![cfg(feature = "cuda")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// The largest mean and single differences allowed between the bf16 GPU and f32 CPU images,
/// in 8-bit levels per channel value: see `pipeline/tests/pipeline_parity.rs` (`cuda_bf16`) for
/// why bf16 is held to these and not to the f32 path's 2/255.
const BF16_MEAN: f64 = 3.0;
const BF16_MAX: u8 = 48;

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
    let text = std::fs::read_to_string(out.join("responses.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            let id = record["id"].as_str().unwrap().to_owned();
            let images = record["images"]
                .as_array()
                .unwrap_or_else(|| panic!("not a response: {record}"))
                .iter()
                .map(|img| {
                    let bytes = STANDARD.decode(img["image_b64"].as_str().unwrap()).unwrap();
                    image::load_from_memory(&bytes).unwrap().to_rgb8()
                })
                .collect();
            (id, images)
        })
        .collect()
}

#[test]
fn examples_render_on_cuda_in_bf16_like_the_cpu_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let (gpu_out, cpu_out): (PathBuf, PathBuf) = (dir.path().join("cuda"), dir.path().join("cpu"));
    let gpu = render(&gpu_out, &["--device", "cuda", "--dtype", "bf16"]);
    let gpu_err = String::from_utf8_lossy(&gpu.stderr);
    if gpu.status.code() == Some(2) && gpu_err.contains("is unavailable") {
        kiln_runtime::cuda::skip_gpu_test("kiln render --device cuda", &gpu_err);
        return;
    }
    assert_eq!(gpu.status.code(), Some(0), "kiln render --device cuda failed:\n{gpu_err}");
    let cpu = render(&cpu_out, &[]);
    assert_eq!(cpu.status.code(), Some(0), "{}", String::from_utf8_lossy(&cpu.stderr));

    let (gpu, cpu) = (images(&gpu_out), images(&cpu_out));
    assert_eq!(gpu.len(), 5, "one response per request");
    let mut failures = Vec::new();
    for (id, want) in &cpu {
        let got = &gpu[id];
        assert_eq!(got.len(), want.len(), "{id}: image count");
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.dimensions(), w.dimensions(), "{id} image {k}");
            let diffs: Vec<u8> = g.as_raw().iter().zip(w.as_raw()).map(|(a, b)| a.abs_diff(*b)).collect();
            let max = diffs.iter().copied().max().unwrap_or(0);
            let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
            eprintln!("{id} image {k}: cuda bf16 vs cpu f32: mean {mean:.3}, max {max}");
            if mean > BF16_MEAN || max > BF16_MAX {
                failures.push(format!("{id} image {k}: mean {mean:.3}, max {max}"));
            }
        }
    }
    assert!(failures.is_empty(), "bf16 images differ from the f32 CPU render:\n{}", failures.join("\n"));
}
