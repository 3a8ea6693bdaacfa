//! `kiln inspect` on the tiny fixtures (both layouts), on full-size checkpoints rebuilt from the
//! key manifests as sparse files, and on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_runtime::checkpoint::manifest::Manifest;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).env("RUST_BACKTRACE", "0").output().unwrap()
}

fn inspect_ok(args: &[&str]) -> String {
    let out = kiln(args);
    assert!(out.status.success(), "kiln {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tiny_fixtures_in_both_layouts() {
    for (rel, format, family, components) in [
        ("fixtures/tiny/sd15", "diffusers folder", "SD 1.5", &["unet", "vae", "text_encoder"][..]),
        ("fixtures/tiny/sd15.safetensors", "single file", "SD 1.5", &["unet", "vae", "text_encoder"][..]),
        (
            "fixtures/tiny/sdxl",
            "diffusers folder",
            "SDXL base",
            &["unet", "vae", "text_encoder", "text_encoder_2"][..],
        ),
        (
            "fixtures/tiny/sdxl.safetensors",
            "single file",
            "SDXL base",
            &["unet", "vae", "text_encoder", "text_encoder_2"][..],
        ),
    ] {
        let path = repo().join(rel);
        let text = inspect_ok(&["inspect", path.to_str().unwrap()]);
        assert!(text.contains(&format!("format      {format}")), "{rel}:\n{text}");
        assert!(text.contains(&format!("family      {family} (reduced-size")), "{rel}:\n{text}");
        for c in components {
            assert!(text.lines().any(|l| l.starts_with(&format!("{c} "))), "{rel}: no {c}:\n{text}");
        }
        assert!(text.contains("unrecognised tensors: 0"), "{rel}:\n{text}");
    }
}

#[test]
fn json_output_parses_and_agrees_across_layouts() {
    let read = |rel: &str| -> serde_json::Value {
        let path = repo().join(rel);
        serde_json::from_str(&inspect_ok(&["inspect", "--json", path.to_str().unwrap()])).unwrap()
    };
    let (a, b) = (read("fixtures/tiny/sdxl"), read("fixtures/tiny/sdxl.safetensors"));
    assert_eq!((a["format"].as_str(), b["format"].as_str()), (Some("diffusers"), Some("single_file")));
    assert_eq!(a["family"], "sdxl_base");
    assert_eq!(a["family"], b["family"]);
    assert_eq!(a["parameters"], b["parameters"]);
    let params = |v: &serde_json::Value| -> Vec<u64> {
        v["components"].as_array().unwrap().iter().map(|c| c["parameters"].as_u64().unwrap()).collect()
    };
    assert_eq!(params(&a), params(&b));
    assert_eq!(a["components"][0]["config"]["block_out_channels"], serde_json::json!([16, 32, 32]));
    assert_eq!(b["ignored"].as_array().unwrap().len(), 2);
}

#[test]
fn tensor_listing_shows_transforms() {
    let path = repo().join("fixtures/tiny/sdxl.safetensors");
    let text = inspect_ok(&["inspect", "--tensors", path.to_str().unwrap()]);
    assert!(text.contains(
        "text_encoder_2.text_projection.weight [32, 32] F16 <- conditioner.embedders.1.model.text_projection [transpose]"
    ));
    assert!(text.contains("[rows 2/3]") && text.contains("[reshape]"));
}

#[test]
fn config_dir_makes_a_reduced_single_file_exact() {
    let single = repo().join("fixtures/tiny/sd15.safetensors");
    let folder = repo().join("fixtures/tiny/sd15");
    let text = inspect_ok(&["inspect", single.to_str().unwrap(), "--config-dir", folder.to_str().unwrap()]);
    assert!(text.contains("norm groups 8") && !text.contains("warnings:"), "{text}");
    let text = inspect_ok(&["inspect", single.to_str().unwrap()]);
    assert!(text.contains("warnings:") && text.contains("pass a config folder"), "{text}");
}

#[test]
fn full_size_sdxl_base_from_the_manifests_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["single_file", "diffusers"] {
        let manifest =
            Manifest::read(&repo().join(format!("fixtures/manifests/sdxl_base.{format}.json"))).unwrap();
        let path = manifest.materialize(&dir.path().join(format)).unwrap();
        let text = inspect_ok(&["inspect", path.to_str().unwrap()]);
        assert!(text.contains("family      SDXL base\n"), "{format}:\n{text}");
        for (component, params) in [
            ("unet", "2,567,463,684"),
            ("vae", "83,653,863"),
            ("text_encoder", "123,060,480"),
            ("text_encoder_2", "694,659,840"),
        ] {
            let line = text.lines().find(|l| l.starts_with(&format!("{component} "))).unwrap();
            assert!(line.contains(&format!("{params} parameters")), "{format}: {line}");
        }
        assert!(
            text.contains("heads [5, 10, 20] (head dim [64, 64, 64]), context 2048"),
            "{format}:\n{text}"
        );
        assert!(text.contains("unrecognised tensors: 0"));
    }
}

#[test]
fn full_size_ssd_1b_from_the_manifests_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["single_file", "diffusers"] {
        let manifest =
            Manifest::read(&repo().join(format!("fixtures/manifests/ssd_1b.{format}.json"))).unwrap();
        let path = manifest.materialize(&dir.path().join(format)).unwrap();
        let text = inspect_ok(&["inspect", path.to_str().unwrap()]);
        assert!(text.contains("family      SSD-1B\n"), "{format}:\n{text}");
        let line = text.lines().find(|l| l.starts_with("unet ")).unwrap();
        assert!(line.contains("1,331,334,404 parameters"), "{format}: {line}");
        assert!(
            text.contains("transformer depth [-, 2, 4], mid block UNetMidBlock2D (no attention)"),
            "{format}:\n{text}"
        );
        assert!(
            text.contains("up-block transformer depths (deepest first) [[4, 4, 10], [2, 1, 1], -]"),
            "{text}"
        );
        assert!(text.contains("unrecognised tensors: 0"));
    }
}

#[test]
fn bad_input_fails_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("cat.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").unwrap();
    let requests = dir.path().join("requests.jsonl");
    std::fs::write(&requests, "{\"prompt\": \"a boat\"}\n").unwrap();
    for (path, what) in [(png.clone(), "PNG"), (dir.path().join("missing.safetensors"), "no such file")] {
        let path = path.to_str().unwrap();
        // With backtraces asked for, still one line: a bad file is the user's error, not a bug.
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["inspect", path])
            .env("RUST_BACKTRACE", "1")
            .output();
        let out = out.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(path) && err.contains(what), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        // `kiln render --model` exits the same way for the same file, naming the same fault.
        let out_dir = dir.path().join("out");
        let render = kiln(&[
            "render",
            requests.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--model",
            path,
        ]);
        let render_err = String::from_utf8_lossy(&render.stderr);
        assert_eq!(render.status.code(), Some(2), "{render_err}");
        assert!(render_err.contains(path) && render_err.contains(what), "{render_err}");
    }
}

#[test]
fn an_ssd_1b_file_read_with_sd15_configs_is_refused_naming_the_field() {
    let tiny = repo().join("fixtures/tiny");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["inspect", tiny.join("ssd_1b.safetensors").to_str().unwrap(), "--config-dir"])
        .arg(tiny.join("sd15"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("sd15") && err.contains("config"), "{err}");
}
