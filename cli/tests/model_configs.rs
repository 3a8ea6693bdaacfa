//! Model configs out of range (issue 13, item 3): a `--model` whose config holds a value kiln
//! cannot compute with is a fatal error at load (exit 2, one line naming the file and field,
//! nothing journaled), where it used to abort the process (`num_train_timesteps: 1e12`) or load
//! and then fail every request. An `--assets` checkpoint that cannot load leaves its lines
//! without a record while the others render (exit 2), so that a rerun after fixing the file
//! renders them.

mod common;

use std::path::{Path, PathBuf};

use common::{TINY_SD15, copy_dir, ids, read_records, render, request_sd15, stderr, stdout, write_requests};
use serde_json::Value;

/// A copy of the tiny SD 1.5 folder at `dir/name` with `key` of its `file` (a JSON config) set to
/// `value`.
fn edited_copy(dir: &Path, name: &str, file: &str, key: &str, value: Value) -> PathBuf {
    let model = dir.join(name);
    copy_dir(Path::new(TINY_SD15), &model);
    let path = model.join(file);
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    model
}

#[test]
fn a_model_config_out_of_range_is_fatal_at_load_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let requests = write_requests(dir.path(), &[request_sd15("boat", 7, "")]);
    let cases = [
        ("scheduler/scheduler_config.json", "num_train_timesteps", serde_json::json!(1e12)),
        ("scheduler/scheduler_config.json", "beta_end", serde_json::json!(0.00001)),
        ("unet/config.json", "norm_num_groups", serde_json::json!(6)),
        ("unet/config.json", "act_fn", serde_json::json!("mish")),
        ("vae/config.json", "scaling_factor", serde_json::json!(0)),
        ("text_encoder/config.json", "layer_norm_eps", serde_json::json!(-1e-5)),
        ("tokenizer/tokenizer_config.json", "model_max_length", serde_json::json!(16)),
    ];
    for (k, (file, key, value)) in cases.into_iter().enumerate() {
        let model = edited_copy(dir.path(), &format!("model{k}"), file, key, value);
        let out = dir.path().join(format!("out{k}"));
        let output = render(&requests, &out, &["--model", model.to_str().unwrap()]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{file} {key}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(key) && err.contains(file), "{file} {key} not named: {err}");
        let journal = out.join("responses.jsonl");
        let records = if journal.exists() { read_records(&journal) } else { Vec::new() };
        assert!(records.is_empty(), "{key}: nothing is journaled: {records:?}");
    }
}

#[test]
fn an_asset_that_cannot_load_leaves_its_lines_for_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("assets").join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    let broken =
        edited_copy(&checkpoints, "broken", "vae/config.json", "scaling_factor", serde_json::json!(-0.18));
    let lines = [
        request_sd15("first", 3, r#", "checkpoint": "broken""#),
        request_sd15("plain", 4, ""),
        request_sd15("second", 5, r#", "checkpoint": "broken""#),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let assets =
        ["--model", TINY_SD15, "--assets", dir.path().join("assets").to_str().unwrap()].map(String::from);
    let args: Vec<&str> = assets.iter().map(String::as_str).collect();

    let output = render(&requests, &out, &args);
    let (err, summary) = (stderr(&output), stdout(&output));
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(
        ids(&read_records(&out.join("responses.jsonl"))),
        ["plain"],
        "only the good line has a record"
    );
    assert_eq!(err.matches("scaling_factor").count(), 1, "said once for both lines: {err}");
    assert!(
        summary.contains("2 requests not rendered, left for a rerun") && summary.contains("scaling_factor"),
        "{summary}"
    );

    // Fixed, the same command renders the two lines left and nothing twice.
    copy_dir(&Path::new(TINY_SD15).join("vae"), &broken.join("vae"));
    let output = render(&requests, &out, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let records = read_records(&out.join("responses.jsonl"));
    assert_eq!(ids(&records), ["plain", "first", "second"]);
    assert!(records.iter().all(|r| r.get("images").is_some()), "{records:?}");
}
