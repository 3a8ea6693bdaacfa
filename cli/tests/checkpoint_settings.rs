//! `NAME.json` beside a checkpoint: its scheduler overrides and request defaults apply to the
//! lines that name the checkpoint (a request's own values win), and a bad file makes the
//! checkpoint unusable, naming the file and the key, for a run and a dry run alike.

mod common;

use std::path::Path;

use common::*;

#[test]
fn a_checkpoint_settings_file_sets_schedule_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("assets/checkpoints");
    for name in ["fast", "plain", "broken"] {
        copy_dir(Path::new(TINY_SD15), &checkpoints.join(name));
    }
    let settings = r#"{"timestep_spacing": "trailing", "sampler": "K_EULER", "steps": 3, "cfg_scale": 1.0}"#;
    std::fs::write(checkpoints.join("fast.json"), settings).unwrap();
    std::fs::write(checkpoints.join("broken.json"), r#"{"steps": 3, "timestep_spacin": "trailing"}"#)
        .unwrap();

    // Requests without steps, cfg_scale and sampler unless `extra` sets them (the shared
    // request helper sets all three).
    let line = |id: &str, extra: &str| {
        format!(
            r#"{{"id": "{id}", "prompt": "a small red boat", "seed": 5, "width": 512, "height": 512, "image_encoding": "png"{extra}}}"#
        )
    };
    let explicit = r#", "sampler": "K_EULER", "steps": 3, "cfg_scale": 1.0"#;
    let lines = [
        line("fast", r#", "checkpoint": "fast""#),
        line("fast-explicit", &format!(r#", "checkpoint": "fast"{explicit}"#)),
        line("plain-explicit", &format!(r#", "checkpoint": "plain"{explicit}"#)),
        line("fast-two-steps", r#", "checkpoint": "octoai:fast", "steps": 2"#),
        line("broken", r#", "checkpoint": "broken""#),
    ];
    let requests = write_requests(dir.path(), &lines);
    let assets = dir.path().join("assets");
    let args = ["--assets", assets.to_str().unwrap()];

    let dry = dir.path().join("dry");
    let output = render_sd15(&requests, &dry, &[&["--dry-run"][..], &args].concat());
    let err = stderr(&output);
    assert!(err.contains("broken.json") && err.contains("timestep_spacin"), "{err}");

    let out = dir.path().join("out");
    let output = render_sd15(&requests, &out, &args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "the broken checkpoint's line is left: {err}");
    assert!(err.contains("broken.json") && err.contains("timestep_spacin"), "{err}");
    let records = records(&out);
    assert!(!records.contains_key("broken"));
    let image = |id: &str| pixels(&records[id]).remove(0);
    assert_eq!(image("fast"), image("fast-explicit"), "the file's defaults are the request's values");
    assert_ne!(
        image("fast-explicit"),
        image("plain-explicit"),
        "trailing timesteps differ from the model's own"
    );
    assert_ne!(image("fast"), image("fast-two-steps"), "a request's own steps win");
}
