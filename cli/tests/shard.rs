//! `kiln render --shard I/N` and `kiln merge`: three shard processes at once over one input (one
//! of them killed with SIGKILL and resumed) give exactly the records of an unsharded run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The input: renders, a line without an id, malformed JSON, an unsupported size, a repeated id.
fn lines() -> Vec<String> {
    let mut lines: Vec<String> = (0..9).map(|i| request(&format!("r{i}"), 300 + i, "")).collect();
    lines.insert(
        3,
        r#"{"prompt": "no id", "steps": 1, "cfg_scale": 1, "seed": 77, "image_encoding": "png"}"#.into(),
    );
    lines.insert(5, "{\"prompt\": \"unterminated".into());
    lines.push(request("bad-size", 1, r#", "width": 1000, "height": 1000"#));
    lines.push(request("r2", 5, ""));
    lines
}

/// A record without its timing, which differs between runs.
fn comparable(mut record: Value) -> Value {
    record.as_object_mut().unwrap().remove("prediction_time_ms");
    record
}

#[test]
fn shards_rendered_at_once_with_a_kill_merge_into_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let requests = write_requests(dir.path(), &lines());

    let whole = dir.path().join("whole");
    let output = render(&requests, &whole, &["--ordered"]);
    assert_eq!(output.status.code(), Some(1), "some lines fail: {}", stderr(&output));

    let sharded = dir.path().join("sharded");
    let spawn =
        |i: usize| spawn_render(&requests, &sharded, &["--shard", &format!("{i}/3"), "--batch-size", "1"]);
    let mut children: Vec<_> = (0..3).map(spawn).collect();
    // Shard 0 is killed once it has journaled a line (or has finished), then resumed.
    let journal = sharded.join("shard-0-of-3/responses.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&journal).unwrap_or_default().contains('\n') {
        assert!(Instant::now() < deadline, "shard 0 wrote nothing in 120 s");
        if children[0].try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    children[0].kill().unwrap();
    let killed = children.remove(0).wait_with_output().unwrap();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(matches!(output.status.code(), Some(0 | 1)), "{}", stderr(&output));
        assert!(stdout(&output).contains("left to the other shards"), "{}", stdout(&output));
    }
    let resumed = render(&requests, &sharded, &["--shard", "0/3", "--batch-size", "1"]);
    assert!(matches!(resumed.status.code(), Some(0 | 1)), "{}", stderr(&resumed));
    if killed.status.code().is_none() {
        assert!(stdout(&resumed).contains("already in the journal"), "{}", stdout(&resumed));
    }

    let shard_dirs: Vec<String> =
        (0..3).map(|i| sharded.join(format!("shard-{i}-of-3")).display().to_string()).collect();
    // Each shard holds only its own lines, and some of them.
    let mut per_shard = Vec::new();
    for shard in &shard_dirs {
        let records = read_records(&Path::new(shard).join("responses.jsonl"));
        per_shard.push(records.len());
    }
    assert_eq!(per_shard.iter().sum::<usize>(), lines().len(), "{per_shard:?}");
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");

    // Two shards are not enough: the third's lines are listed and nothing is written.
    let merged = dir.path().join("merged");
    let partial = kiln()
        .arg("merge")
        .arg(&merged)
        .args(&shard_dirs[..2])
        .arg("--requests")
        .arg(&requests)
        .output()
        .unwrap();
    assert_eq!(partial.status.code(), Some(1), "{}", stderr(&partial));
    assert!(stderr(&partial).contains("missing: line"), "{}", stderr(&partial));
    assert!(!merged.join("responses.jsonl").exists());

    let output =
        kiln().arg("merge").arg(&merged).args(&shard_dirs).arg("--requests").arg(&requests).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let merged = read_records(&merged.join("responses.jsonl"));
    let whole = read_records(&whole.join("responses.jsonl"));
    assert_eq!(ids(&merged), ids(&whole), "input order");
    for (m, w) in merged.into_iter().zip(whole) {
        let id = w["id"].clone();
        assert!(comparable(m) == comparable(w), "record {id} differs from the unsharded run's");
    }
}

/// `kiln render REQUESTS --out OUT ARGS...` with `env` set and the job-array variables not set
/// otherwise.
fn render_in_job(requests: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = kiln();
    command.arg("render").arg(requests).arg("--out").arg(out).args(args);
    for name in
        ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT", "JOB_COMPLETION_INDEX"]
    {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).output().unwrap()
}

#[test]
fn shard_auto_reads_the_job_array() {
    let dir = tempfile::tempdir().unwrap();
    let requests = write_requests(dir.path(), &[request("a", 1, r#", "width": 1000"#)]);
    let out = dir.path().join("out");
    // A Kubernetes Indexed Job: the index from the environment, the count from --shards.
    let output = render_in_job(
        &requests,
        &out,
        &["--shard", "auto", "--shards", "2"],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", stderr(&output));
    assert!(out.join("shard-1-of-2").is_dir());
    // Slurm: the array's size from SLURM_ARRAY_TASK_COUNT, the index less SLURM_ARRAY_TASK_MIN.
    let slurm =
        [("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "5"), ("SLURM_ARRAY_TASK_COUNT", "3")];
    let output = render_in_job(&requests, &out, &["--shard", "auto"], &slurm);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", stderr(&output));
    assert!(out.join("shard-0-of-3").is_dir());
    // Neither: a clear error, exit 2; an index past the count likewise.
    let output = render_in_job(&requests, &out, &["--shard", "auto", "--shards", "2"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("JOB_COMPLETION_INDEX"), "{}", stderr(&output));
    let bad = render_in_job(&requests, &out, &["--shard", "3/3"], &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
