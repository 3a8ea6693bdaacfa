//! SIGINT and SIGTERM during `kiln render`: the run stops after the model call in flight, journals
//! what completed (whole lines, each id once), prints its summary and exits 130 or 143; a rerun
//! renders the rest, so the two runs together answer every line exactly once. With the tiny SD 1.5
//! fixture at 512 x 512, one step, one image per group: CPU time is the budget. A second signal
//! exits at once, even while kiln waits on its input.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Starts a run of three requests, sends `signal` once the journal has a record, and checks
/// the exit `status`, the journal, and that a rerun completes it.
fn stop_with(signal: &str, status: i32) {
    let dir = tempfile::tempdir().unwrap();
    let all = ["s0", "s1", "s2"];
    let lines: Vec<String> = all.iter().zip(200..).map(|(id, seed)| request_sd15(id, seed, "")).collect();
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let args = ["--model", TINY_SD15, "--batch-size", "1"];
    let mut child = spawn_render(&requests, &out, &args);
    let journal = out.join("responses.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&journal).unwrap_or_default().contains('\n') {
        assert!(Instant::now() < deadline, "no response line within 120 s");
        assert!(child.try_wait().unwrap().is_none(), "kiln exited before writing a line");
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(status), "SIG{signal}: {err}");
    assert!(err.contains(&format!("SIG{signal}: stopping")), "{err}");
    assert!(stdout(&output).contains("stopped early"), "the summary is printed: {}", stdout(&output));

    // Whole records, distinct ids, and not all of them (the run was cut short).
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.ends_with('\n'), "no partial line");
    let first_ids = ids(&read_records(&journal));
    let distinct: HashSet<&String> = first_ids.iter().collect();
    assert_eq!(distinct.len(), first_ids.len(), "each id once: {first_ids:?}");
    assert!(!first_ids.is_empty() && first_ids.len() < all.len(), "stopped part way: {first_ids:?}");

    let rerun = render(&requests, &out, &args);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    assert!(
        stdout(&rerun).contains(&format!("{} already in the journal", first_ids.len())),
        "{}",
        stdout(&rerun)
    );
    let mut every = ids(&read_records(&journal));
    every.sort();
    assert_eq!(every, all, "the two runs answer every line exactly once");
}

#[test]
fn sigterm_stops_after_the_call_in_flight_and_exits_143() {
    stop_with("TERM", 143);
}

#[test]
fn sigint_stops_after_the_call_in_flight_and_exits_130() {
    stop_with("INT", 130);
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Reading standard input that stays open: without the second signal, kiln would wait for
    // the end of its input forever.
    let mut child = kiln()
        .args(["render", "-", "--model", TINY_SD15, "--out"])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock(&mut child, &out);
    let pid = child.id().to_string();
    let interrupt = || {
        let sent = Command::new("kill").args(["-s", "INT", &pid]).status().unwrap();
        assert!(sent.success());
    };
    interrupt();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("SIGINT: stopping after the model call in flight"), "{line}");
    interrupt();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the second SIGINT did not end kiln within 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("SIGINT: exiting now"), "{rest}");
    drop(child.stdin.take());
}
