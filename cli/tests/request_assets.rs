//! Requests naming assets, end to end: `"loras"` from the `--assets` library's `loras/` folder
//! (by name, with or without `.safetensors`, with OctoAI's `octoai:` prefix) merged into the
//! model for the lines that name them, each set once per group, and `"vae"` from `vaes/` in place
//! of the checkpoint's own; unknown names, LoRAs for the other family and corrupt files are error
//! records on their field, and the run goes on.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

const LORAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/lora");

#[test]
fn requests_merge_their_loras_and_bad_ones_are_error_records() {
    let dir = tempfile::tempdir().unwrap();
    let loras = dir.path().join("assets/loras");
    std::fs::create_dir_all(&loras).unwrap();
    for (from, to) in [
        ("sd15_kohya", "crayon-style"),
        ("sd15_peft", "paint-splash"),
        ("sd15_locon", "texture"),
        ("sdxl_kohya", "xl-style"),
    ] {
        std::fs::copy(
            Path::new(LORAS).join(format!("{from}.safetensors")),
            loras.join(format!("{to}.safetensors")),
        )
        .unwrap();
    }
    let bytes = std::fs::read(loras.join("texture.safetensors")).unwrap();
    std::fs::write(loras.join("truncated.safetensors"), &bytes[..bytes.len() / 3]).unwrap();

    let with = |loras: &str| format!(r#", "loras": {loras}"#);
    let lines = [
        request_sd15("plain", 5, ""),
        request_sd15("two", 5, &with(r#"{"octoai:crayon-style": 0.7, "octoai:paint-splash": 0.3}"#)),
        request_sd15("one", 5, &with(r#"{"crayon-style.safetensors": 1.0}"#)),
        request_sd15("two-again", 5, &with(r#"{"paint-splash": 0.3, "crayon-style": 0.7}"#)),
        request_sd15("plain-again", 5, &with("{}")),
        request_sd15("unknown", 5, &with(r#"{"crayon-styel": 1.0}"#)),
        request_sd15("xl", 5, &with(r#"{"xl-style": 1.0}"#)),
        request_sd15("truncated", 5, &with(r#"{"truncated": 1.0}"#)),
        request_sd15("escape", 5, &with(r#"{"../loras/texture": 1.0}"#)),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let assets = dir.path().join("assets");
    let output = render_sd15(&requests, &out, &["--assets", assets.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let records = records(&out);

    let image = |id: &str| pixels(&records[id]).remove(0);
    assert_eq!(image("two"), image("two-again"), "the same set in another order is the same set");
    assert_eq!(image("plain"), image("plain-again"), "an empty map is no LoRA");
    assert_ne!(image("plain"), image("two"));
    assert_ne!(image("one"), image("two"));
    assert!(err.contains("crayon-style.safetensors: merged into"), "the log says what merged: {err}");

    let unknown = first_error(&records["unknown"]);
    assert_eq!(unknown["loc"], json!(["body", "loras", "crayon-styel"]), "{unknown}");
    let msg = unknown["msg"].as_str().unwrap();
    assert!(msg.contains("unknown LoRA") && msg.contains("has crayon-style, "), "closest first: {msg}");
    for (id, says) in [("xl", "SDXL"), ("truncated", "truncated.safetensors"), ("escape", "not a plain name")]
    {
        let error = first_error(&records[id]);
        assert_eq!(error["loc"][1], "loras", "{id}: {error}");
        let msg = error["msg"].as_str().unwrap();
        assert!(msg.contains(says), "{id}: {msg}");
    }
}

#[test]
fn requests_swap_in_their_vae_and_bad_ones_are_error_records() {
    let dir = tempfile::tempdir().unwrap();
    let vaes = dir.path().join("assets/vaes");
    std::fs::create_dir_all(&vaes).unwrap();
    let fixtures = Path::new(LORAS).parent().unwrap().join("vae");
    std::fs::copy(fixtures.join("sd15_other.original.safetensors"), vaes.join("other.safetensors")).unwrap();
    std::fs::copy(Path::new(LORAS).join("sd15_kohya.safetensors"), vaes.join("not-a-vae.safetensors"))
        .unwrap();

    let lines = [
        request_sd15("own", 5, ""),
        request_sd15("other", 5, r#", "vae": "octoai:other""#),
        request_sd15("own-again", 5, r#", "vae": null"#),
        request_sd15("unknown", 5, r#", "vae": "othr""#),
        request_sd15("not-a-vae", 5, r#", "vae": "not-a-vae""#),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let assets = dir.path().join("assets");
    let output = render_sd15(&requests, &out, &["--assets", assets.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let records = records(&out);
    let image = |id: &str| pixels(&records[id]).remove(0);
    assert!(image("own") == image("own-again"));
    assert!(image("own") != image("other"), "the other VAE decodes differently");
    for (id, says) in [("unknown", "has other"), ("not-a-vae", "VAE")] {
        let error = first_error(&records[id]);
        assert_eq!(error["loc"], json!(["body", "vae"]), "{id}: {error}");
        assert!(error["msg"].as_str().unwrap().contains(says), "{id}: {error}");
    }
}

#[test]
fn requests_add_their_textual_inversions_and_bad_ones_are_error_records() {
    let dir = tempfile::tempdir().unwrap();
    let embeddings = dir.path().join("assets/embeddings");
    std::fs::create_dir_all(&embeddings).unwrap();
    let fixtures = Path::new(LORAS).parent().unwrap().join("textual_inversion");
    std::fs::copy(fixtures.join("sd15_style.safetensors"), embeddings.join("style.safetensors")).unwrap();
    std::fs::copy(fixtures.join("sdxl_style.safetensors"), embeddings.join("xl-style.safetensors")).unwrap();

    let with = |prompt: &str, tis: &str| format!(r#", "prompt": "{prompt}", "textual_inversions": {tis}"#);
    let lines = [
        request_sd15("plain", 5, r#", "prompt": "a kilnstyle boat""#),
        request_sd15("style", 5, &with("a kilnstyle boat", r#"{"octoai:style": "kilnstyle"}"#)),
        request_sd15("weighted", 5, &with("a (kilnstyle:1.3) boat", r#"{"style": "kilnstyle"}"#)),
        request_sd15("unknown", 5, &with("a boat", r#"{"styel": "kilnstyle"}"#)),
        request_sd15("xl", 5, &with("a boat", r#"{"xl-style": "kilnstyle"}"#)),
        request_sd15("word", 5, &with("a boat", r#"{"style": "boat"}"#)),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let assets = dir.path().join("assets");
    let output = render_sd15(&requests, &out, &["--assets", assets.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let records = records(&out);
    let image = |id: &str| pixels(&records[id]).remove(0);
    assert!(image("plain") != image("style"), "the trigger stands for the embedding");
    assert!(image("style") != image("weighted"), "prompt weighting applies around it");
    let unknown = first_error(&records["unknown"]);
    assert_eq!(unknown["loc"], json!(["body", "textual_inversions", "styel"]), "{unknown}");
    for (id, says) in [("xl", "SDXL"), ("word", "vocabulary")] {
        let error = first_error(&records[id]);
        assert_eq!(error["loc"], json!(["body", "textual_inversions"]), "{id}: {error}");
        assert!(error["msg"].as_str().unwrap().contains(says), "{id}: {error}");
    }
}
