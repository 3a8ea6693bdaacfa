//! The SDXL refiner end to end: `--refiner` (or `checkpoints/sdxl-refiner` in the assets
//! library) refines SDXL requests that leave `use_refiner` to its default (true) or ask for it;
//! without a refiner the default renders the base alone with a warning (and the summary says
//! so once), an explicit `use_refiner: true` is an error record saying how to give one, and the
//! run goes on; a `--refiner` that is not a refiner stops the run before anything renders.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

fn fixture(path: &str) -> String {
    Path::new(FIXTURES).join(path).to_str().unwrap().to_owned()
}

/// Four Euler steps at SDXL's 1024 x 1024 without guidance: at the default hand-over (0.8) the
/// base runs three, the refiner one.
fn line(id: &str, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}", "prompt": "a lighthouse at dusk", "steps": 4, "cfg_scale": 1, "seed": 9, "image_encoding": "png", "sampler": "K_EULER"{extra}}}"#
    )
}

fn lines() -> Vec<String> {
    vec![
        line("default", ""),
        line("asked", r#", "use_refiner": true, "high_noise_frac": 0.5"#),
        line("off", r#", "use_refiner": false"#),
    ]
}

#[test]
fn requests_use_the_refiner_by_default_and_say_so_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let requests = write_requests(dir.path(), &lines());
    let (with, without) = (dir.path().join("with"), dir.path().join("without"));
    let sdxl = fixture("tiny/sdxl");
    let output = render(&requests, &with, &["--model", &sdxl, "--refiner", &fixture("tiny/sdxl_refiner")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let refined = records(&with);
    for id in ["default", "asked", "off"] {
        assert!(refined[id].get("warnings").is_none(), "{id}: {}", refined[id]);
    }
    let image = |records: &std::collections::HashMap<String, serde_json::Value>, id: &str| {
        pixels(&records[id]).remove(0)
    };
    assert!(image(&refined, "default") != image(&refined, "off"), "the refiner changed nothing");
    assert!(image(&refined, "default") != image(&refined, "asked"), "high_noise_frac changed nothing");

    let output = render(&requests, &without, &["--model", &sdxl]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let base = records(&without);
    let warnings = &base["default"]["warnings"];
    assert!(warnings[0].as_str().unwrap().contains("no SDXL refiner is configured"), "{warnings}");
    assert!(image(&base, "default") == image(&refined, "off"), "without a refiner: the base alone");
    let error = first_error(&base["asked"]);
    assert_eq!(error["loc"], json!(["body", "use_refiner"]), "{error}");
    assert!(error["msg"].as_str().unwrap().contains("--refiner PATH"), "{error}");
    let summary = stdout(&output);
    assert!(summary.contains("1 SDXL request rendered without the SDXL refiner"), "{summary}");
}

#[test]
fn the_assets_library_lends_its_sdxl_refiner() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(&fixture("tiny/sdxl_refiner")), &dir.path().join("assets/checkpoints/sdxl-refiner"));
    let requests = write_requests(dir.path(), &lines()[..1]);
    let (library, flag) = (dir.path().join("library"), dir.path().join("flag"));
    let assets = dir.path().join("assets");
    let output = render(
        &requests,
        &library,
        &["--model", &fixture("tiny/sdxl"), "--assets", assets.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = render(
        &requests,
        &flag,
        &["--model", &fixture("tiny/sdxl"), "--refiner", &fixture("tiny/sdxl_refiner")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(pixels(&records(&library)["default"]) == pixels(&records(&flag)["default"]));
}

#[test]
fn a_refiner_that_is_not_a_refiner_stops_the_run_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let requests = write_requests(dir.path(), &lines());
    let out = dir.path().join("out");
    let output =
        render(&requests, &out, &["--model", &fixture("tiny/sdxl"), "--refiner", &fixture("tiny/ssd_1b")]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("ssd_1b") && err.contains("SSD-1B, not an SDXL refiner"), "{err}");
    assert!(!out.join("responses.jsonl").exists() || records(&out).is_empty(), "nothing rendered");
}
