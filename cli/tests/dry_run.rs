//! `kiln render --dry-run`: the same error records as a real run (compared by id on the render
//! test's mixed file and on a file of image, checkpoint and family errors), nothing for good
//! lines, no model made or loaded, no journal touched, and exit statuses 0 / 1 / 2.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

/// The error records of a JSONL file by id (an id may have several: a repeated id's).
fn errors_by_id(path: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for record in read_records(path) {
        if record.get("error").is_some() {
            by_id.entry(record["id"].as_str().unwrap().to_owned()).or_default().push(record);
        }
    }
    by_id
}

/// Runs `requests` for real and as a dry run (with `extra` flags) and checks that the dry run
/// wrote exactly the real run's error records and nothing else; returns the records by id.
fn same_errors_as_a_real_run(dir: &Path, requests: &Path, extra: &[&str]) -> BTreeMap<String, Vec<Value>> {
    let real = dir.join("real");
    let output = render(requests, &real, extra);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    // A fresh cache: the dry run must not make the demo model.
    let cache = dir.join("empty-cache");
    let dry = dir.join("dry");
    let output = kiln()
        .env("KILN_CACHE_DIR", &cache)
        .arg("render")
        .arg(requests)
        .arg("--out")
        .arg(&dry)
        .arg("--dry-run")
        .args(extra)
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "some line is invalid: {err}");
    assert!(!cache.exists(), "the dry run made a model in {}", cache.display());
    assert!(!dry.join("responses.jsonl").exists(), "the dry run wrote a journal");

    let dry_records = read_records(&dry.join("dry-run.jsonl"));
    assert!(dry_records.iter().all(|r| r.get("error").is_some()), "only error records: {dry_records:?}");
    let (real_errors, dry_errors) =
        (errors_by_id(&real.join("responses.jsonl")), errors_by_id(&dry.join("dry-run.jsonl")));
    assert_eq!(dry_errors, real_errors, "the dry run's records are the real run's error records");
    let failed: usize = real_errors.values().map(Vec::len).sum();
    assert!(err.contains(&format!("{failed} with errors")), "the summary: {err}");
    real_errors
}

#[test]
fn the_mixed_render_file_gives_the_real_runs_error_records() {
    let dir = tempfile::tempdir().unwrap();
    let lines = mixed_demo_lines();
    let requests = write_requests(dir.path(), &lines);
    // No --model: the demo model (SDXL) for the real run, its known family for the dry run.
    let errors = same_errors_as_a_real_run(dir.path(), &requests, &[]);
    for id in ["2", "bad-size", "controlnet", "good", "typo", "deep-clip", "lcm-steps"] {
        assert!(errors.contains_key(id), "{id} has an error record: {errors:?}");
    }
    assert_eq!(errors["good"].len(), 1, "only the repeated line of id good fails");
}

#[test]
fn image_checkpoint_and_family_errors_are_the_real_runs() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(assets.join("checkpoints")).unwrap();
    // A copy: symlinks leading out of the assets folder are refused.
    copy_dir(Path::new(TINY_SD15), &assets.join("checkpoints").join("tiny"));
    let (init, mask) = (noise_png(24, 16, 3, false), noise_png(24, 16, 4, true));
    let images = |init: &str, mask: &str| {
        format!(r#", "init_image": "{init}", "mask_image": "{mask}", "strength": 1.0"#)
    };
    let lines = [
        request_sd15("inpaint", 31, &(images(&init, &mask) + r#", "checkpoint": "tiny""#)),
        request_sd15("bad-init", 32, &images("bm90IGFuIGltYWdl", &mask)),
        request_sd15("bad-mask", 33, &images(&init, "%%%")),
        request_sd15("unknown-checkpoint", 34, r#", "checkpoint": "dreamshaper""#),
        request("sdxl-size-on-sd15", 36, r#", "width": 640, "height": 1536"#),
        request_sd15("prompt-2-on-sd15", 37, r#", "prompt_2": "a lake""#),
        request_sd15("fine", 38, r#", "num_images": 2"#),
    ];
    let requests = write_requests(dir.path(), &lines);
    let extra = ["--model", TINY_SD15, "--assets", assets.to_str().unwrap()];
    let errors = same_errors_as_a_real_run(dir.path(), &requests, &extra);
    let failing = ["bad-init", "bad-mask", "unknown-checkpoint", "sdxl-size-on-sd15", "prompt-2-on-sd15"];
    assert_eq!(errors.keys().collect::<Vec<_>>(), {
        let mut f = failing.to_vec();
        f.sort();
        f
    });
    let summary = stderr(
        &kiln()
            .arg("render")
            .arg(&requests)
            .arg("--out")
            .arg(dir.path().join("dry2"))
            .arg("--dry-run")
            .args(extra)
            .output()
            .unwrap(),
    );
    assert!(
        summary.contains("7 lines checked") && summary.contains("2 valid (3 images to render)"),
        "{summary}"
    );
}

/// A checkpoint from `--assets` that cannot be used: the run leaves its lines for a rerun (no
/// record, exit 2), and the dry run says so in its summary (no record, exit 2).
#[test]
fn an_unusable_asset_is_reported_as_the_run_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(assets.join("checkpoints")).unwrap();
    std::fs::write(assets.join("checkpoints").join("broken.safetensors"), b"not a safetensors file").unwrap();
    let lines = [
        request_sd15("broken-1", 35, r#", "checkpoint": "broken""#),
        request_sd15("fine", 36, ""),
        request_sd15("broken-2", 37, r#", "checkpoint": "broken""#),
    ];
    let requests = write_requests(dir.path(), &lines);
    let extra = ["--model", TINY_SD15, "--assets", assets.to_str().unwrap()];

    let real = dir.path().join("real");
    let output = render(&requests, &real, &extra);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(ids(&read_records(&real.join("responses.jsonl"))), ["fine"]);
    assert!(stdout(&output).contains("2 requests not rendered"), "{}", stdout(&output));

    let dry = dir.path().join("dry");
    let output = render(&requests, &dry, &[&["--dry-run"][..], &extra].concat());
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(std::fs::read_to_string(dry.join("dry-run.jsonl")).unwrap(), "", "no error record");
    assert!(
        err.contains("2 lines would wait for the checkpoint") && err.contains("broken.safetensors"),
        "{err}"
    );
}

#[test]
fn a_valid_file_exits_0_and_replaces_an_old_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("dry-run.jsonl"), "{\"id\": \"stale\", \"error\": {}}\n").unwrap();
    std::fs::write(out.join("responses.jsonl"), "{\"id\": \"earlier\", \"images\": []}\n").unwrap();
    let lines = [request_sd15("a", 1, ""), request_sd15("b", 2, "")];
    let requests = write_requests(dir.path(), &[&*lines[0], &lines[1]]);
    let output = render(&requests, &out, &["--dry-run", "--model", TINY_SD15]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(out.join("dry-run.jsonl")).unwrap(), "", "no error, no record");
    assert_eq!(
        std::fs::read_to_string(out.join("responses.jsonl")).unwrap(),
        "{\"id\": \"earlier\", \"images\": []}\n",
        "the journal is not touched"
    );
    assert!(stderr(&output).contains("2 valid (2 images to render), 0 with errors"), "{}", stderr(&output));
}

#[test]
fn unreadable_input_and_a_bad_model_are_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let output = render(&dir.path().join("absent.jsonl"), &dir.path().join("out"), &["--dry-run"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read the requests") && err.contains("absent.jsonl"), "{err}");

    let output = render(dir.path(), &dir.path().join("out"), &["--dry-run"]);
    assert_eq!(output.status.code(), Some(2), "a folder is not a requests file: {}", stderr(&output));

    let requests = write_requests(dir.path(), &[&*request_sd15("x", 1, "")]);
    let missing = dir.path().join("no-such-model.safetensors");
    let output =
        render(&requests, &dir.path().join("out"), &["--dry-run", "--model", missing.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-model.safetensors"), "{err}");
}
