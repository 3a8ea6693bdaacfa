//! Files that are not regular files (issue 13, item 5): a FIFO or device where kiln expects a
//! checkpoint or config is refused before it is opened (opening a FIFO used to hang kiln), a
//! symlink in `--assets` leading out of it is refused (it used to be opened, and its bytes echoed
//! in the error), and a `responses.jsonl` that is a symlink is refused (kiln used to truncate the
//! target's last line). No error prints bytes of the file it rejected.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// A line no real checkpoint or journal contains, to show a rejected file's bytes are not echoed.
const SECRET: &str = "root:x:0:0:kiln-secret-line";

/// Runs `kiln render` with a deadline: a run that blocks on a FIFO fails the test instead of
/// hanging it.
fn render_within(requests: &Path, out: &Path, extra: &[&str], limit: Duration) -> Output {
    let mut child = spawn_render(requests, out, extra);
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("kiln render {extra:?} still running after {limit:?}: blocked on a special file?");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn fifos_and_devices_are_refused_before_they_are_opened() {
    let dir = tempfile::tempdir().unwrap();
    let requests = write_requests(dir.path(), &[request_sd15("boat", 7, "")]);
    let fifo = dir.path().join("model.safetensors");
    mkfifo(&fifo);
    // A model folder whose tokenizer vocabulary is a FIFO.
    let folder = dir.path().join("sd15");
    copy_dir(Path::new(TINY_SD15), &folder);
    let vocab = folder.join("tokenizer").join("vocab.json");
    std::fs::remove_file(&vocab).unwrap();
    mkfifo(&vocab);

    let cases =
        [(fifo.to_str().unwrap(), "FIFO"), ("/dev/zero", "device"), (folder.to_str().unwrap(), "FIFO")];
    for (k, (model, what)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("out{k}"));
        let output = render_within(&requests, &out, &["--model", model], Duration::from_secs(60));
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{model}: {err}");
        assert!(err.contains(what) && err.trim().lines().count() == 1, "{model}: {err}");
    }
}

#[test]
fn symlinks_out_of_the_assets_folder_are_refused_without_echoing_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("passwd");
    std::fs::write(&secret, format!("{SECRET}\n").repeat(20)).unwrap();
    let checkpoints = dir.path().join("assets").join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    std::os::unix::fs::symlink(&secret, checkpoints.join("x.safetensors")).unwrap();
    let requests = write_requests(
        dir.path(),
        &[request_sd15("linked", 7, r#", "checkpoint": "x""#), request_sd15("plain", 8, "")],
    );
    let out = dir.path().join("out");
    let assets = dir.path().join("assets");
    let output = render(&requests, &out, &["--model", TINY_SD15, "--assets", assets.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let journal = std::fs::read_to_string(out.join(JOURNAL)).unwrap();
    assert!(!journal.contains("kiln-secret") && !err.contains("kiln-secret"), "{journal}\n{err}");
    let records = read_records(&out.join(JOURNAL));
    let linked = records.iter().find(|r| r["id"] == "linked").unwrap();
    let detail = &linked["error"]["detail"][0];
    assert_eq!(detail["loc"], serde_json::json!(["body", "checkpoint"]), "{linked}");
    assert!(detail["msg"].as_str().unwrap().contains("outside the assets directory"), "{linked}");
    assert!(records.iter().any(|r| r["id"] == "plain" && r.get("images").is_some()), "{records:?}");
}

#[test]
fn a_journal_that_is_a_symlink_is_refused_and_its_target_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious.jsonl");
    let text = format!("{{\"id\": \"a\"}}\n{SECRET}");
    std::fs::write(&target, &text).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&target, out.join(JOURNAL)).unwrap();
    let requests = write_requests(dir.path(), &[request_sd15("boat", 7, "")]);
    let output = render(&requests, &out, &["--model", TINY_SD15]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("symlink") && !err.contains("kiln-secret"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), text, "the target is untouched");
}

const JOURNAL: &str = "responses.jsonl";
