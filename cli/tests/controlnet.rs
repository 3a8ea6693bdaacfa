//! ControlNet requests end to end: `controlnets/` in the asset library (the default `canny`, a
//! name, a single file), the control image decoded, resized and turned into a Canny map, and
//! every kind of bad input as an error record on its field while the other lines render.

mod common;

use std::path::Path;

use base64::Engine as _;
use common::*;
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/controlnet");

/// An SD 1.5 line at 512 x 512 with guidance (both halves go through the ControlNet).
fn line(id: &str, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}", "prompt": "a lighthouse on a cliff", "negative_prompt": "blurry", "steps": 2, "cfg_scale": 5, "seed": 21, "width": 512, "height": 512, "image_encoding": "png", "sampler": "K_EULER"{extra}}}"#
    )
}

/// A library with the tiny SD 1.5 ControlNet as `canny` (a folder) and as `depth`, and the tiny
/// SDXL one as a single file.
fn library(root: &Path) -> std::path::PathBuf {
    let assets = root.join("assets");
    let nets = assets.join("controlnets");
    copy_dir(&Path::new(FIXTURES).join("sd15_canny"), &nets.join("canny"));
    copy_dir(&Path::new(FIXTURES).join("sd15_canny"), &nets.join("depth"));
    std::fs::copy(Path::new(FIXTURES).join("sdxl_canny.safetensors"), nets.join("sdxl_canny.safetensors"))
        .unwrap();
    assets
}

fn control_png() -> String {
    base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(Path::new(FIXTURES).join("control_a.png")).unwrap())
}

#[test]
fn controlnet_requests_render_and_bad_ones_get_errors_on_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let assets = library(dir.path());
    let image = control_png();
    let lines = [
        line("guided", &format!(r#", "controlnet_image": "{image}""#)),
        line("plain", ""),
        line("as-given", &format!(r#", "controlnet_image": "{image}", "controlnet_preprocess": false"#)),
        line(
            "half",
            &format!(
                r#", "controlnet_image": "{image}", "controlnet_conditioning_scale": 0.5, "controlnet_early_stop": 0.5"#
            ),
        ),
        line("unknown", &format!(r#", "controlnet": "scribble", "controlnet_image": "{image}""#)),
        line("bad-image", r#", "controlnet_image": "aW1hZ2U=""#),
        line("other-family", &format!(r#", "controlnet": "sdxl_canny", "controlnet_image": "{image}""#)),
        line("depth-preprocess", &format!(r#", "controlnet": "depth", "controlnet_image": "{image}""#)),
        line(
            "depth-map",
            &format!(
                r#", "controlnet": "depth", "controlnet_image": "{image}", "controlnet_preprocess": false"#
            ),
        ),
        line("engine-only", r#", "engine": "controlnet-sdxl""#),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let assets_arg = assets.to_str().unwrap();
    let output = render_sd15(&requests, &out, &["--assets", assets_arg]);
    assert_eq!(output.status.code(), Some(1), "some lines fail: {}", stderr(&output));
    let records = records(&out);

    let guided = pixels(&records["guided"]).remove(0);
    let plain = pixels(&records["plain"]).remove(0);
    let as_given = pixels(&records["as-given"]).remove(0);
    let half = pixels(&records["half"]).remove(0);
    assert!(guided != plain, "the ControlNet changes the image");
    assert!(as_given != guided, "the image as given is not its Canny map");
    assert!(half != guided && half != plain, "scale 0.5 for half the steps is in between");
    assert!(pixels(&records["depth-map"]).remove(0) == as_given, "the same weights under another name");

    let error_at = |id: &str| first_error(&records[id]).clone();
    let unknown = error_at("unknown");
    assert_eq!(unknown["loc"], json!(["body", "controlnet"]), "{unknown}");
    assert!(unknown["msg"].as_str().unwrap().contains("canny"), "lists the library's ControlNets: {unknown}");
    assert_eq!(error_at("bad-image")["loc"], json!(["body", "controlnet_image"]));
    let family = error_at("other-family");
    assert_eq!(family["loc"], json!(["body", "controlnet"]), "{family}");
    assert!(family["msg"].as_str().unwrap().contains("SDXL"), "{family}");
    let depth = error_at("depth-preprocess");
    assert_eq!(depth["loc"], json!(["body", "controlnet_preprocess"]), "{depth}");
    assert!(depth["msg"].as_str().unwrap().contains("depth"), "{depth}");
    let engine = error_at("engine-only");
    assert_eq!(
        (engine["loc"].clone(), engine["type"].clone()),
        (json!(["body", "controlnet_image"]), json!("missing"))
    );

    // The dry run finds the same request faults without loading a model (the family mismatch
    // shows only when the ControlNet is loaded).
    let dry = dir.path().join("dry");
    let output = render_sd15(&requests, &dry, &["--assets", assets_arg, "--dry-run"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let dry_records = read_records(&dry.join("dry-run.jsonl"));
    for id in ["unknown", "bad-image", "depth-preprocess", "engine-only"] {
        let record =
            dry_records.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id}: no dry-run record"));
        assert_eq!(first_error(record)["loc"], first_error(&records[id])["loc"], "{id}");
    }
    let failed: Vec<&str> = dry_records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in ["guided", "plain", "as-given", "half", "depth-map"] {
        assert!(!failed.contains(&id), "{id} passes the dry run");
    }
}

#[test]
fn a_controlnet_request_without_an_asset_library_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let requests = write_requests(
        dir.path(),
        &[line("guided", &format!(r#", "controlnet_image": "{}""#, control_png()))],
    );
    let out = dir.path().join("out");
    let output = render_sd15(&requests, &out, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let error = first_error(&records(&out)["guided"]).clone();
    assert_eq!(error["loc"], json!(["body", "controlnet"]), "{error}");
    assert!(error["msg"].as_str().unwrap().contains("--assets"), "{error}");
}
