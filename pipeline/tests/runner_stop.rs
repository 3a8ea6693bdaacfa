//! The stop flag SIGINT/SIGTERM set through the CLI. `Engine::render_until` finishes the UNet call
//! in flight and starts no other. `runner::run_until` with the flag set renders no group,
//! journals the error records already due, holds back repeated ids' records (written before their
//! first occurrence's they would be taken for it), does not sort for `--ordered`, and the next run
//! renders what is left. With the tiny SD 1.5 fixture.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_pipeline::generate::{Engine, GenerateError};
use kiln_pipeline::request::parse_line;
use kiln_pipeline::runner::{self, RendererOptions, RequestSource, RunOptions, Sorted};
use kiln_runtime::checkpoint::Family;
use kiln_runtime::{DType, Device};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn request(id: &str, seed: u32, width: u32) -> String {
    format!(
        r#"{{"id": "{id}", "prompt": "a boat", "steps": 1, "cfg_scale": 1, "seed": {seed}, "width": {width}, "height": 512, "image_encoding": "png", "sampler": "K_EULER"}}"#
    )
}

fn journal_ids(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join(runner::JOURNAL_FILE))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn a_stopped_run_journals_only_what_completed_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [request("a", 1, 512), request("bad", 2, 100), request("a", 3, 512), request("b", 4, 512)];
    let requests = dir.path().join("requests.jsonl");
    std::fs::write(&requests, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    let options = RunOptions {
        ordered: true,
        ..RunOptions::new(
            RequestSource::File(requests),
            out.clone(),
            RendererOptions {
                model: Some(repo("fixtures/tiny/sd15")),
                batch_size: 1,
                ..RendererOptions::default()
            },
        )
    };

    let stopped = runner::run_until(&options, &AtomicBool::new(true)).unwrap();
    assert_eq!((stopped.done, stopped.failed, stopped.images), (0, 1, 0), "{stopped}");
    assert_eq!(stopped.stopped, Some(3), "a and b unrendered, a's repeat unwritten: {stopped}");
    assert_eq!(stopped.ordered, None, "a stopped run is not sorted");
    assert_eq!(journal_ids(&out), ["bad"]);

    let finished = runner::run(&options).unwrap();
    assert_eq!((finished.done, finished.failed, finished.skipped), (2, 1, 1), "{finished}");
    assert_eq!(finished.stopped, None);
    assert_eq!(finished.ordered, Some(Sorted::Rewritten { records: 4 }));
    assert_eq!(journal_ids(&out), ["a", "bad", "a", "b"], "each line once, in input order");
}

#[test]
fn the_engine_finishes_the_unet_call_in_flight_and_starts_no_other() {
    let engine = Engine::load(&repo("fixtures/tiny/sd15"), DType::F32, Device::Cpu).expect("tiny SD 1.5");
    let text = r#"{"prompt": "a boat", "steps": 3, "cfg_scale": 1, "seed": 5, "sampler": "K_EULER", "width": 512, "height": 512}"#;
    let mut job = parse_line(text, 1).request.unwrap().resolve(Family::Sd15).unwrap().job;
    (job.width, job.height) = (64, 64);

    let stop = AtomicBool::new(false);
    let mut calls = Vec::new();
    let mut progress = |done, total| {
        calls.push((done, total));
        stop.store(true, Ordering::Relaxed); // as if a signal came during this call
    };
    let stopped = engine.render_until(std::slice::from_ref(&job), 1, &mut progress, &stop);
    assert!(matches!(stopped, Err(GenerateError::Stopped)), "{stopped:?}");
    assert_eq!(calls, [(1, 3)], "the first call finished and no other began");

    let mut calls = 0;
    let images = engine.render_until(&[job], 1, &mut |_, _| calls += 1, &AtomicBool::new(false)).unwrap();
    assert_eq!((calls, images[0].len()), (3, 1), "unset, the flag changes nothing");
}
