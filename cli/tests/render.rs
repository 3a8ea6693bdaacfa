//! `kiln render` end to end, through the built binary: response and error lines (with the demo
//! model, made once under Cargo's target tmp dir), resume after `kill -9`, batch-size
//! independence and exit statuses (with the tiny SD 1.5 fixture at 512 x 512, the cheapest size
//! a family accepts). One step each, guidance off where it is not under test: CPU time is the
//! budget.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[test]
fn a_mixed_file_gives_a_response_or_an_error_record_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let deep = demo_clip_skip_limit() + 1;
    let lines = mixed_demo_lines();
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    // No --model: the demo model.
    let output = render(&requests, &out, &["--save-images"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "a failed line makes the status 1; stderr: {err}");
    assert!(err.contains("demo model"), "the demo notice: {err}");
    assert!(err.contains("negative_promt"), "the error names the unknown field: {err}");

    let text = std::fs::read_to_string(out.join("responses.jsonl")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<&str> = lines.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["2", "bad-size", "controlnet", "typo", "deep-clip", "good", "lcm-steps", "good"],
        "errors first, renders, then repeated ids"
    );

    let good = &lines[5];
    assert_eq!(good["images"][0]["seed"], 11);
    assert_eq!(good["images"][0]["removed_for_safety"], false);
    assert!(good["images"][0]["safety_score"].is_null());
    assert!(good["prediction_time_ms"].as_f64().unwrap() > 0.0);
    let images = pixels(good);
    assert_eq!((images.len(), images[0].width(), images[0].height()), (1, 1024, 1024), "SDXL's default size");
    let saved = image::open(out.join("images").join("good_0.png")).unwrap().to_rgb8();
    assert_eq!(saved, images[0], "the saved file is the response's image");

    // The malformed line (line 2) is named by its line number.
    let malformed = first_error(&lines[0]);
    assert_eq!(malformed["loc"], serde_json::json!(["body"]));
    assert_eq!(malformed["type"], "json_invalid");
    let size = first_error(&lines[1]);
    assert_eq!(size["loc"][0], "body");
    assert!(size["msg"].as_str().unwrap().contains("1024"), "lists the supported sizes: {size}");
    // A ControlNet named without its control image.
    let controlnet = first_error(&lines[2]);
    assert_eq!(controlnet["loc"], serde_json::json!(["body", "controlnet_image"]));
    assert_eq!(controlnet["type"], "missing");
    // An unknown field is pydantic's extra_forbidden, with the value sent.
    let typo = first_error(&lines[3]);
    assert_eq!(typo["loc"], serde_json::json!(["body", "negative_promt"]));
    assert_eq!(
        (&typo["type"], &typo["input"]),
        (&serde_json::json!("extra_forbidden"), &serde_json::json!("blurry"))
    );
    // Too deep for the model's text encoders: a validation error on clip_skip, not a render failure.
    let deep_clip = first_error(&lines[4]);
    assert_eq!(deep_clip["loc"], serde_json::json!(["body", "clip_skip"]), "{deep_clip}");
    assert_eq!(deep_clip["type"], "value_error");
    assert!(deep_clip["msg"].as_str().unwrap().contains(&format!("at most {}", deep - 1)), "{deep_clip}");
    let lcm = first_error(&lines[6]);
    assert_eq!(lcm["loc"], serde_json::json!(["body", "steps"]), "{lcm}");
    let repeated = first_error(&lines[7]);
    assert_eq!(repeated["loc"], serde_json::json!(["body", "id"]));
    assert!(repeated["msg"].as_str().unwrap().contains("line 1"), "{repeated}");

    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("1 request done, 7 failed, 1 image"), "{summary}");

    // Rerunning skips every line and still reports the failures in its status.
    let output = render(&requests, &out, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(out.join("responses.jsonl")).unwrap(), text, "nothing rerun");
}

#[test]
fn a_run_killed_mid_way_resumes_with_nothing_lost_or_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..3).map(|i| request_sd15(&format!("r{i}"), 100 + i, "")).collect();
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let args = ["--batch-size", "1", "--save-images"];

    let mut child = kiln()
        .arg("render")
        .arg(&requests)
        .arg("--out")
        .arg(&out)
        .args(["--model", TINY_SD15])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = out.join("responses.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        if text.contains('\n') {
            // At least one complete line (a line still being written has no newline yet).
            break;
        }
        assert!(Instant::now() < deadline, "no response line within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "kiln exited before writing a line");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written = std::fs::read_to_string(&journal).unwrap();
    let complete = written.matches('\n').count();
    assert!(complete < lines.len(), "the kill must interrupt the run ({complete} lines written)");

    // As if the kill had landed mid-write: a partial last line, which the rerun cuts off.
    let mut file = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
    file.write_all(br#"{"id":"r2","images":[{"image_b64":"iVBORw0KGgo"#).unwrap();
    drop(file);

    let output = render_sd15(&requests, &out, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("partial last line"), "{}", stderr(&output));
    let resumed = records(&out);
    assert_eq!(resumed.len(), lines.len());
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains(&format!("{complete} already in the journal")), "{summary}");

    // The same requests in one uninterrupted run give the same images.
    let reference_out = dir.path().join("reference");
    let output = render_sd15(&requests, &reference_out, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let reference = records(&reference_out);
    for (id, record) in &reference {
        assert_eq!(pixels(&resumed[id]), pixels(record), "{id}");
        let name = format!("{id}_0.png");
        let saved = std::fs::read(out.join("images").join(&name)).unwrap();
        assert_eq!(saved, std::fs::read(reference_out.join("images").join(&name)).unwrap(), "{name}");
    }
}

/// A demo-model request of `images` images from `seed`, one UNet call (two steps at strength
/// 0.5 for an init image), PNG; `extra` adds fields.
fn request_demo(id: &str, seed: u32, images: u32, extra: &str) -> String {
    let steps = if extra.contains("init_image") { 2 } else { 1 };
    format!(
        r#"{{"id": "{id}", "prompt": "a small red boat, (watercolour:1.2)", "steps": {steps}, "seed": {seed}, "num_images": {images}, "image_encoding": "png", "sampler": "K_EULER"{extra}}}"#
    )
}

#[test]
fn batch_size_does_not_change_the_images() {
    let dir = tempfile::tempdir().unwrap();
    // The demo model at 1024 x 1024. Text-to-image with guided and unguided rows in one batch
    // (the unconditional half is batched too), img2img and inpainting, four images each, so
    // that batch sizes 2, 3 and 8 cut each group differently: 2 + 2, 3 + 1 and 4.
    let (init, mask) = (noise_png(40, 40, 5, false), noise_png(40, 40, 6, true));
    let img2img = format!(r#", "init_image": "{init}", "strength": 0.5"#);
    let inpaint = format!(r#"{img2img}, "mask_image": "{mask}""#);
    let lines = [
        request_demo("guided", 21, 2, r#", "cfg_scale": 7, "negative_prompt": "fog""#),
        request_demo("unguided", 23, 2, r#", "cfg_scale": 1"#),
        request_demo("img2img", 25, 3, &format!(r#"{img2img}, "cfg_scale": 7"#)),
        request_demo("img2img-2", 28, 1, &format!(r#"{img2img}, "cfg_scale": 1"#)),
        request_demo("inpaint", 29, 4, &format!(r#"{inpaint}, "cfg_scale": 3"#)),
    ];
    let text = lines.join("\n") + "\n";
    let requests = write_requests(dir.path(), &lines);

    let single = dir.path().join("single");
    let output = render(&requests, &single, &["--batch-size", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let single = records(&single);
    assert_eq!(single.len(), lines.len());

    for batch_size in ["2", "3", "8"] {
        // The batched runs read the same requests from standard input.
        let batched = dir.path().join(format!("batch-{batch_size}"));
        let mut child = kiln()
            .args(["render", "-", "--batch-size", batch_size, "--out"])
            .arg(&batched)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let batched = records(&batched);
        for (id, record) in &single {
            let (a, b) = (pixels(record), pixels(&batched[id]));
            assert_eq!(a.len(), b.len(), "{id}");
            for (k, (x, y)) in a.iter().zip(&b).enumerate() {
                assert_eq!(record["images"][k]["seed"], batched[id]["images"][k]["seed"], "{id}");
                let differ = x.as_raw().iter().zip(y.as_raw()).filter(|(p, q)| p != q).count();
                let worst = x.as_raw().iter().zip(y.as_raw()).map(|(p, q)| p.abs_diff(*q)).max().unwrap();
                assert_eq!(
                    worst, 0,
                    "{id} image {k}: --batch-size {batch_size} differs from --batch-size 1 by up to \
                     {worst}/255 in {differ} values"
                );
            }
        }
    }
    assert_eq!(single["guided"]["images"][1]["seed"], 22, "image k of seed s uses s + k");
    assert_ne!(
        pixels(&single["guided"])[0],
        pixels(&single["guided"])[1],
        "different seeds, different images"
    );
}

#[test]
fn init_and_mask_images_and_checkpoints_are_used_or_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(assets.join("checkpoints")).unwrap();
    // A copy: symlinks leading out of the assets folder are refused.
    copy_dir(Path::new(TINY_SD15), &assets.join("checkpoints").join("tiny"));
    let (init, mask) = (noise_png(24, 16, 3, false), noise_png(24, 16, 4, true));
    let images = |init: &str, mask: &str| {
        format!(r#", "init_image": "{init}", "mask_image": "{mask}", "strength": 1.0, "outpainting": true"#)
    };
    let lines = [
        request_sd15("outpaint", 31, &(images(&init, &mask) + r#", "checkpoint": "tiny""#)),
        request_sd15("bad-init", 32, &images("bm90IGFuIGltYWdl", &mask)),
        request_sd15("bad-mask", 33, &images(&init, "%%%")),
        request_sd15("unknown-checkpoint", 34, r#", "checkpoint": "dreamshaper""#),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let output = render_sd15(&requests, &out, &["--assets", assets.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let records = records(&out);

    let outpaint = pixels(&records["outpaint"]);
    assert_eq!((outpaint[0].width(), outpaint[0].height()), (512, 512));
    let bad_init = first_error(&records["bad-init"]);
    assert_eq!(bad_init["loc"], serde_json::json!(["body", "init_image"]), "{bad_init}");
    let bad_mask = first_error(&records["bad-mask"]);
    assert_eq!(bad_mask["loc"], serde_json::json!(["body", "mask_image"]), "{bad_mask}");
    let unknown = first_error(&records["unknown-checkpoint"]);
    assert_eq!(unknown["loc"], serde_json::json!(["body", "checkpoint"]), "{unknown}");
    let msg = unknown["msg"].as_str().unwrap();
    assert!(msg.contains("dreamshaper") && msg.contains("tiny"), "names it and lists what exists: {msg}");
}

#[test]
fn fatal_errors_exit_with_status_2_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let requests = write_requests(dir.path(), &[&*request_sd15("x", 1, "")]);

    let missing = dir.path().join("no-such-model.safetensors");
    let output = render(&requests, &dir.path().join("out"), &["--model", missing.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-model.safetensors") && err.lines().count() == 1, "{err}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let output = render_sd15(&requests, &file.join("out"), &[]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("output directory"), "{err}");

    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("responses.jsonl"), "{\"id\": \"a\"}\nnot a record\n").unwrap();
    let output = render_sd15(&requests, &corrupt, &[]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("responses.jsonl:2"), "names the journal line: {err}");

    // A missing --assets folder, for a run and a dry run: nothing is written.
    let assets = dir.path().join("no-such-assets");
    for extra in [&[][..], &["--dry-run"][..]] {
        let out = dir.path().join("out-assets");
        let args = [&["--assets", assets.to_str().unwrap()][..], extra].concat();
        let output = render_sd15(&requests, &out, &args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("no-such-assets") && err.lines().count() == 1, "{extra:?}: {err}");
        assert!(!out.exists(), "{extra:?}: nothing written");
    }

    let output = render_sd15(&dir.path().join("absent.jsonl"), &dir.path().join("out2"), &[]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("absent.jsonl"), "{err}");

    if !cfg!(feature = "cuda") {
        let output = render_sd15(&requests, &dir.path().join("out3"), &["--device", "cuda"]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(err.contains("CUDA"), "{err}");
    }
}
