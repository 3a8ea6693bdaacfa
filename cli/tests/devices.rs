//! `kiln render --device A,B`: one shard process per device, merged into `DIR/responses.jsonl`
//! in input order, with the records a single-device run writes. (Two CPU "devices" here; the
//! same path takes cuda:0,cuda:1.)

mod common;

use common::*;
use serde_json::Value;

fn without_time(mut record: Value) -> Value {
    record.as_object_mut().unwrap().remove("prediction_time_ms");
    record
}

#[test]
fn several_devices_render_a_shard_each_and_merge_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..5).map(|i| request(&format!("d{i}"), 40 + i, "")).collect();
    let requests = write_requests(dir.path(), &lines);
    let single = dir.path().join("single");
    let output = render(&requests, &single, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let out = dir.path().join("multi");
    let output = render(&requests, &out, &["--device", "cpu,cpu"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        out.join("shard-0-of-2/responses.jsonl").exists()
            && out.join("shard-1-of-2/responses.jsonl").exists()
    );
    let merged = read_records(&out.join("responses.jsonl"));
    assert_eq!(ids(&merged), ["d0", "d1", "d2", "d3", "d4"]);
    let mut alone = read_records(&single.join("responses.jsonl"));
    alone.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
    for (m, a) in merged.into_iter().zip(alone) {
        assert!(without_time(m) == without_time(a), "a record differs from the single-device run's");
    }
    // The same command again resumes (nothing left) and merges again.
    let again = render(&requests, &out, &["--device", "cpu,cpu"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(ids(&read_records(&out.join("responses.jsonl"))).len(), 5);
    // Standard input cannot be read once per device; --shard is the command's own.
    let output =
        kiln().args(["render", "-", "--out"]).arg(&out).args(["--device", "cpu,cpu"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = render(&requests, &out, &["--device", "cpu,cpu", "--shard", "0/2"]);
    assert_eq!(output.status.code(), Some(2));
}
