//! Weights that are NaN (issue 13, item 2): a copy of the tiny SD 1.5 fixture with one weight set
//! to NaN is refused at load, naming the file and the tensor (exit 2, nothing journaled); with
//! `--skip-weight-check` it renders into a `render_failed` record naming the stage where the NaN
//! surfaced (text encoder, VAE encoder, UNet step, VAE decoder), never a black image reported as a success.

mod common;

use std::path::{Path, PathBuf};

use common::{TINY_SD15, copy_dir, noise_png, read_records, render, request_sd15, stderr, write_requests};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::Value;

/// f16 NaN, little-endian.
const F16_NAN: [u8; 2] = 0x7e00u16.to_le_bytes();

/// A copy of the tiny SD 1.5 folder in `dir` whose `file` has one value of `tensor` (in the
/// middle) set to NaN, rewritten with the safetensors crate.
fn poisoned_copy(dir: &Path, file: &str, tensor: &str) -> PathBuf {
    let model = dir.join("sd15");
    copy_dir(Path::new(TINY_SD15), &model);
    let path = model.join(file);
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let file_tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = file_tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.dtype(), view.shape().to_vec(), view.data().to_vec()))
        .collect();
    let (_, dtype, _, data) = tensors.iter_mut().find(|t| t.0 == tensor).expect("tensor in the fixture");
    assert_eq!(*dtype, Dtype::F16, "the fixture stores f16");
    let middle = data.len() / 4 * 2;
    data[middle..middle + 2].copy_from_slice(&F16_NAN);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (name.clone(), TensorView::new(*dtype, shape.clone(), data).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, header.metadata().clone(), &path).unwrap();
    model
}

/// Renders one cheap request (`fields` added) with `model`; returns the exit status, standard
/// error and the journal's records.
fn render_one(dir: &Path, model: &Path, fields: &str, extra: &[&str]) -> (Option<i32>, String, Vec<Value>) {
    let line = request_sd15("boat", 7, fields);
    let requests = write_requests(dir, &[&line]);
    let out = dir.join(format!("out{}", extra.len()));
    let output = render(&requests, &out, &[&["--model", model.to_str().unwrap()], extra].concat());
    let journal = out.join("responses.jsonl");
    let records = if journal.exists() { read_records(&journal) } else { Vec::new() };
    (output.status.code(), stderr(&output), records)
}

/// The one record's single error, which must be a `render_failed` on the body.
fn render_failed_message(records: &[Value]) -> String {
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["id"], "boat");
    assert!(record.get("images").is_none(), "a NaN render must not be a success: {record}");
    let detail = &record["error"]["detail"];
    assert_eq!(detail.as_array().map(Vec::len), Some(1), "{record}");
    assert_eq!(detail[0]["type"], "render_failed", "{record}");
    assert_eq!(detail[0]["loc"], serde_json::json!(["body"]), "{record}");
    detail[0]["msg"].as_str().unwrap().to_owned()
}

#[test]
fn a_nan_unet_weight_is_refused_at_load_and_named_by_step_when_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let model = poisoned_copy(dir.path(), "unet/diffusion_pytorch_model.safetensors", "conv_in.weight");

    let (code, err, records) = render_one(dir.path(), &model, "", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for part in ["unet/diffusion_pytorch_model.safetensors", "`conv_in.weight`", "NaN"] {
        assert!(err.contains(part), "{part:?} not in: {err}");
    }
    assert!(records.is_empty(), "nothing is journaled when the model cannot load: {records:?}");

    let (code, err, records) = render_one(dir.path(), &model, "", &["--skip-weight-check"]);
    assert_eq!(code, Some(1), "{err}");
    let msg = render_failed_message(&records);
    assert!(msg.contains("UNet step 1 of 1"), "{msg}");
}

#[test]
fn nan_in_the_text_encoder_or_vae_names_that_stage() {
    let vae = "vae/diffusion_pytorch_model.safetensors";
    let img2img = format!(r#", "init_image": "{}", "strength": 1.0"#, noise_png(512, 512, 5, false));
    let cases = [
        (
            "text_encoder/model.safetensors",
            "text_model.final_layer_norm.weight",
            "",
            "the text encoder (prompt)",
        ),
        (vae, "decoder.conv_out.weight", "", "the VAE decoder"),
        (vae, "encoder.conv_in.weight", img2img.as_str(), "the VAE encoder (init_image)"),
    ];
    for (file, tensor, fields, stage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let model = poisoned_copy(dir.path(), file, tensor);
        let (code, err, _) = render_one(dir.path(), &model, fields, &[]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(file) && err.contains(tensor), "{err}");
        let (code, err, records) = render_one(dir.path(), &model, fields, &["--skip-weight-check"]);
        assert_eq!(code, Some(1), "{err}");
        let msg = render_failed_message(&records);
        assert!(msg.contains(stage), "{stage:?} not in: {msg}");
    }
}

#[test]
fn an_embedding_that_overflows_names_the_text_encoder() {
    // 3e38 is a valid weight (it fits f32, so validation passes), but the weighted hidden
    // states overflow: old kiln wrote an all-black image with exit 0.
    let dir = tempfile::tempdir().unwrap();
    let line = format!(
        r#"{{"id": "boat", "prompt": "a small red (boat:3{})", "steps": 1, "cfg_scale": 1, "seed": 7, "width": 512, "height": 512}}"#,
        "0".repeat(38)
    );
    let requests = write_requests(dir.path(), &[&line]);
    let out = dir.path().join("out");
    let output = render(&requests, &out, &["--model", TINY_SD15]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let msg = render_failed_message(&read_records(&out.join("responses.jsonl")));
    assert!(msg.contains("the text encoder (prompt)"), "{msg}");
}
