//! One process per output folder: `kiln render` holds `DIR/.kiln.lock` (an OS advisory lock) while
//! it runs, so a second render or a `kiln sort` on the folder exits 2 naming the holder's pid; the
//! lock goes when the holder exits, `kill -9` included. A journal already holding an id more often
//! than the input (from concurrent runs before the lock) is reported, and each line counts once.
//! With the tiny SD 1.5 fixture at 512 x 512, one step: CPU time is the budget.

mod common;

use std::path::Path;
use std::process::Child;

use common::*;

/// `kiln render` with the tiny SD 1.5 fixture, one image per batch, in the background.
fn spawn_sd15(requests: &Path, out: &Path) -> Child {
    spawn_render(requests, out, &["--model", TINY_SD15, "--batch-size", "1"])
}

fn sd15_requests(dir: &Path, ids: &[&str]) -> std::path::PathBuf {
    let lines: Vec<String> = ids.iter().zip(100..).map(|(id, seed)| request_sd15(id, seed, "")).collect();
    write_requests(dir, &lines)
}

#[test]
fn a_second_render_or_sort_on_a_folder_in_use_exits_2_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let requests = sd15_requests(dir.path(), &["r0", "r1"]);
    let out = dir.path().join("out");
    let mut first = spawn_sd15(&requests, &out);
    wait_for_lock(&mut first, &out);
    let pid = first.id();

    let second = render(&requests, &out, &["--model", TINY_SD15]);
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("pid {pid}")), "names the holder: {err}");
    assert!(err.contains(&out.display().to_string()), "names the folder: {err}");

    let sort = kiln().arg("sort").arg(&requests).arg("--out").arg(&out).output().unwrap();
    let err = stderr(&sort);
    assert_eq!(sort.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("pid {pid}")) && err.lines().count() == 1, "{err}");
    assert!(first.try_wait().unwrap().is_none(), "the first run still held the lock throughout");

    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let records = read_records(&out.join("responses.jsonl"));
    assert_eq!(ids(&records), ["r0", "r1"], "each id once: the second run wrote nothing");

    // Released at exit: the same command runs again (everything already answered).
    let again = render(&requests, &out, &["--model", TINY_SD15]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stdout(&again).contains("2 already in the journal"), "{}", stdout(&again));
    let sorted = kiln().arg("sort").arg(&requests).arg("--out").arg(&out).output().unwrap();
    assert_eq!(sorted.status.code(), Some(0), "{}", stderr(&sorted));
}

#[test]
fn the_lock_of_a_run_killed_with_sigkill_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let requests = sd15_requests(dir.path(), &["k0"]);
    let out = dir.path().join("out");
    let mut killed = spawn_sd15(&requests, &out);
    wait_for_lock(&mut killed, &out);
    killed.kill().unwrap(); // SIGKILL: no destructor runs, the OS drops the lock
    killed.wait().unwrap();
    assert_eq!(std::fs::read_to_string(out.join(".kiln.lock")).unwrap(), format!("{}\n", killed.id()));

    let rerun = render(&requests, &out, &["--model", TINY_SD15]);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    assert_eq!(ids(&read_records(&out.join("responses.jsonl"))), ["k0"]);
}

#[test]
fn a_journal_holding_ids_twice_is_reported_and_counts_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        request_sd15("a", 1, ""),
        request_sd15("bad", 2, ""),
        request_sd15("b", 3, ""),
        request_sd15("b", 4, ""),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Two runs' records interleaved; "b" is repeated in the input, so two records are its due.
    let image = r#"{"id":"ID","images":[{"image_b64":"","seed":1}],"prediction_time_ms":1.0}"#;
    let error = r#"{"id":"ID","error":{"detail":[{"loc":["body"],"msg":"failed","type":"render_failed"}]}}"#;
    let journal: String =
        [(image, "a"), (error, "bad"), (image, "a"), (error, "bad"), (image, "b"), (error, "b")]
            .iter()
            .map(|(record, id)| record.replace("ID", id) + "\n")
            .collect();
    std::fs::write(out.join("responses.jsonl"), &journal).unwrap();

    let output = render(&requests, &out, &["--model", TINY_SD15]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let warning = err.lines().find(|l| l.contains("more records than input lines")).unwrap_or_else(|| {
        panic!("no warning about the repeated records: {err}");
    });
    assert!(warning.contains("for 2 ids") && warning.contains(r#": "a", "bad""#), "{warning}");
    assert!(!warning.contains(r#""b""#), "b's two records are its two lines' records: {warning}");
    let summary = stdout(&output);
    assert!(summary.contains("4 already in the journal, skipped (2 of them failed)"), "{summary}");
    assert_eq!(std::fs::read_to_string(out.join("responses.jsonl")).unwrap(), journal, "nothing written");
}
