//! Ordered output: `kiln render --ordered` and `kiln sort` rewrite responses.jsonl (appended in
//! completion order) in input order, only once every line has its record, by a rename that
//! keeps every line. With the tiny SD 1.5 fixture at 512 x 512, one step: CPU time is the budget.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Three renders, two error lines and a repeated id: completion order differs from input order.
fn mixed_lines() -> Vec<String> {
    vec![
        request_sd15("r0", 100, ""),
        request_sd15("r1", 101, ""),
        "{\"prompt\": \"unterminated".to_owned(),
        request_sd15("r2", 102, ""),
        request_sd15("bad-size", 103, r#", "width": 100"#),
        request_sd15("r0", 104, ""),
    ]
}

/// The ids of the input lines as the runner names them.
const INPUT_IDS: [&str; 6] = ["r0", "r1", "3", "r2", "bad-size", "r0"];

fn journal_ids(out: &Path) -> Vec<String> {
    ids(&read_records(&out.join("responses.jsonl")))
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn sort(requests: &Path, out: &Path) -> std::process::Output {
    kiln().arg("sort").arg(requests).arg("--out").arg(out).output().unwrap()
}

#[test]
fn ordered_runs_and_kiln_sort_give_input_order_keeping_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = mixed_lines();
    let requests = write_requests(dir.path(), &lines);

    let ordered = dir.path().join("ordered");
    let output = render(&requests, &ordered, &["--model", TINY_SD15, "--ordered"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(journal_ids(&ordered), INPUT_IDS);
    assert!(stdout(&output).contains("rewritten in input order (6 records)"), "{}", stdout(&output));
    let records = read_records(&ordered.join("responses.jsonl"));
    assert!(records[0].get("images").is_some() && records[5].get("error").is_some(), "r0's repeat fails");

    // Without --ordered: completion order (errors first, the repeated id last) ...
    let unordered = dir.path().join("unordered");
    let output = render(&requests, &unordered, &["--model", TINY_SD15]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let journal = unordered.join("responses.jsonl");
    assert_eq!(journal_ids(&unordered), ["3", "bad-size", "r0", "r1", "r2", "r0"]);
    let before = sorted_lines(&journal);
    let inode = std::fs::metadata(&journal).unwrap().ino();

    // ... which kiln sort puts in input order: the same lines, in a new file renamed into place.
    let output = sort(&requests, &unordered);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("rewritten in input order"), "{}", stdout(&output));
    assert_eq!(journal_ids(&unordered), INPUT_IDS);
    assert_eq!(sorted_lines(&journal), before, "every line kept, byte for byte");
    assert_ne!(std::fs::metadata(&journal).unwrap().ino(), inode, "replaced by a rename");
    assert!(!unordered.join(".responses.jsonl.tmp").exists(), "no temporary file left");
    for (a, b) in read_records(&journal).iter().zip(&records) {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(a.get("error"), b.get("error"));
        assert_eq!(a["images"][0]["image_b64"], b["images"][0]["image_b64"], "{}", a["id"]);
    }

    // Sorting a sorted journal leaves it alone.
    let inode = std::fs::metadata(&journal).unwrap().ino();
    let output = sort(&requests, &unordered);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("already in input order"), "{}", stdout(&output));
    assert_eq!(std::fs::metadata(&journal).unwrap().ino(), inode);
}

#[test]
fn an_interrupted_ordered_run_is_sorted_only_when_resumed_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let lines = mixed_lines();
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let journal = out.join("responses.jsonl");
    let args = ["--model", TINY_SD15, "--ordered", "--batch-size", "1"];

    let mut child = spawn_render(&requests, &out, &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    // The two error records come first; stop the run once a render's record follows them.
    while std::fs::read_to_string(&journal).unwrap_or_default().matches('\n').count() < 3 {
        assert!(Instant::now() < deadline, "no render's record within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "kiln exited before the kill");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = std::fs::read_to_string(&journal).unwrap();
    let complete = partial.lines().count();
    assert!(complete < INPUT_IDS.len(), "the kill must interrupt the run ({complete} lines)");
    assert_eq!(&journal_ids(&out)[..2], ["3", "bad-size"], "still in completion order");

    // kiln sort refuses an unfinished journal and leaves it as it is.
    let output = sort(&requests, &out);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("no record yet"), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), partial);

    // As if the kill had landed mid-write: a partial line, which kiln sort will not guess about.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap()
        .write_all(b"{\"id\":\"r2\",\"ima")
        .unwrap();
    let output = sort(&requests, &out);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("partial last line"), "{}", stderr(&output));

    // Resuming to the end sorts it.
    let output = render(&requests, &out, &args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(journal_ids(&out), INPUT_IDS);
    assert!(stdout(&output).contains("rewritten in input order"), "{}", stdout(&output));
}

#[test]
fn sort_errors_are_fatal_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let requests = write_requests(dir.path(), &[&*request_sd15("a", 1, "")]);
    let output = sort(&requests, &dir.path().join("no-output-here"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("responses.jsonl"), "{}", stderr(&output));
    let output = sort(&dir.path().join("absent.jsonl"), dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("absent.jsonl"), "{}", stderr(&output));
}
