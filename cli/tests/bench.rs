//! `kiln bench`: the report of each thing it times, FLOP counts equal to diffusers' (counted by
//! torch's FlopCounterMode, fixtures/flops/flops.json from tools/make_flop_fixtures.py), and
//! clear errors for bad arguments.

mod common;

use common::{TINY_SD15, kiln, stderr, stdout};
use serde_json::Value;

const TINY_SDXL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny/sdxl");

fn bench(args: &[&str]) -> (String, String, Option<i32>) {
    let out = kiln().arg("bench").args(args).args(["--iters", "1", "--warmup", "0"]).output().unwrap();
    (stdout(&out), stderr(&out), out.status.code())
}

/// The FLOPs per call the report gives.
fn counted_flops(report: &str) -> u64 {
    let line =
        report.lines().find(|l| l.starts_with("work per call: ")).unwrap_or_else(|| panic!("{report}"));
    line["work per call: ".len()..].split(' ').next().unwrap().parse().unwrap()
}

/// diffusers' count for `name`'s `component` at `batch`.
fn reference_flops(name: &str, component: &str, batch: u64) -> u64 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/flops/flops.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let case = cases
        .iter()
        .find(|c| c["name"] == name && c["component"] == component && c["batch"] == batch)
        .unwrap_or_else(|| panic!("no reference for {name} {component} batch {batch}"));
    case["flops"].as_u64().unwrap()
}

#[test]
fn unet_and_vae_flops_equal_diffusers_counts() {
    for (model, name) in [(TINY_SD15, "tiny/sd15"), (TINY_SDXL, "tiny/sdxl")] {
        let (report, err, code) = bench(&["unet", "--model", model, "--size", "64", "--batch", "2"]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(counted_flops(&report), reference_flops(name, "unet", 2), "{name} UNet\n{report}");
        let (report, err, code) = bench(&["vae", "--model", model, "--size", "64"]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(counted_flops(&report), reference_flops(name, "vae_decoder", 1), "{name} VAE\n{report}");
    }
}

#[test]
fn each_subject_reports_time_rate_and_op_families() {
    for what in
        [&["step", "--size", "64"][..], &["text", "--batch", "2"], &["image", "--size", "64", "--steps", "2"]]
    {
        let (report, err, code) = bench(what);
        assert_eq!(code, Some(0), "{what:?}: {err}");
        for needle in
            ["f32 FMA peak: ", "time per call: median ", "op family", "outside ops", "peak resident memory"]
        {
            assert!(report.contains(needle), "{what:?}: no `{needle}` in\n{report}");
        }
        // Every timed subject runs convolutions or matrix products, and counts them.
        assert!(report.lines().any(|l| l.starts_with("conv ") || l.starts_with("matmul ")), "{report}");
        assert!(counted_flops(&report) > 0, "{report}");
    }
}

#[test]
fn the_peak_alone_names_its_instruction_set() {
    let (report, err, code) = bench(&["peak"]);
    assert_eq!(code, Some(0), "{err}");
    let line = report.lines().find(|l| l.starts_with("f32 FMA peak: ")).unwrap();
    let gflops: f64 = line["f32 FMA peak: ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(gflops > 0.1, "{line}");
    assert!(["avx512f", "avx2+fma", "scalar"].iter().any(|isa| line.contains(isa)), "{line}");
}

#[test]
fn bad_arguments_are_named() {
    let (_, err, code) = bench(&["unet", "--size", "100"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--size 100") && err.contains("multiple of 8"), "{err}");
    let (_, err, code) = bench(&["vae", "--model", "/no/such/checkpoint"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/no/such/checkpoint"), "{err}");
    let out = kiln().args(["bench", "unet", "--random", "sd15", "--model", TINY_SD15]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--random and --model together are refused by clap");
    let out = kiln().args(["bench", "unet", "--dtype", "f64"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("f64"), "{}", stderr(&out));
}
