//! Progress lines: with standard error not a terminal (a pipe here), `kiln render` prints
//! `images N/TOTAL, R img/s, eta T` every `--progress-interval` seconds; 0 turns them off.

mod common;

use common::*;

/// `(done, total)` of each progress line in `stderr`, checking each line's whole form.
fn progress_lines(stderr: &str) -> Vec<(u64, u64)> {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("images "))
        .map(|rest| {
            let parts: Vec<&str> = rest.split(", ").collect();
            assert_eq!(parts.len(), 3, "{rest}");
            let (done, total) = parts[0].split_once('/').unwrap_or_else(|| panic!("{rest}"));
            let rate = parts[1].strip_suffix(" img/s").unwrap_or_else(|| panic!("{rest}"));
            assert!(rate.parse::<f64>().unwrap() >= 0.0, "{rest}");
            let eta = parts[2].strip_prefix("eta ").unwrap_or_else(|| panic!("{rest}"));
            let known = ["s", "m", "h"].iter().any(|unit| {
                eta.strip_suffix(unit).is_some_and(|n| n.chars().all(|c| c.is_ascii_alphanumeric()))
            });
            assert!(eta == "unknown" || known, "eta: {rest}");
            (done.parse().unwrap(), total.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_run_logging_to_a_pipe_prints_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    // The demo model: three images over two requests, a few steps each.
    let lines = [request("a", 1, r#", "steps": 3"#), request("b", 2, r#", "steps": 3, "num_images": 2"#)];
    let requests = write_requests(dir.path(), &[&*lines[0], &lines[1]]);
    let output =
        render(&requests, &dir.path().join("out"), &["--progress-interval", "0.05", "--batch-size", "1"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let progress = progress_lines(&err);
    assert!(progress.len() >= 2, "a line every 0.05 s: {err}");
    assert!(progress.iter().all(|&(done, total)| total == 3 && done <= 3), "{err}");
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0), "counts only grow: {err}");
    assert!(progress.iter().any(|&(done, _)| done > 0), "images get counted: {err}");
}

#[test]
fn an_interval_of_zero_prints_none() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [request_sd15("a", 1, ""), request_sd15("b", 2, "")];
    let requests = write_requests(dir.path(), &[&*lines[0], &lines[1]]);
    let output =
        render(&requests, &dir.path().join("out"), &["--model", TINY_SD15, "--progress-interval", "0"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(progress_lines(&err).is_empty(), "{err}");

    let output = render(&requests, &dir.path().join("out2"), &["--progress-interval=-1"]);
    assert_eq!(output.status.code(), Some(2), "clap's usage error: {}", stderr(&output));
    assert!(stderr(&output).contains("not a number of seconds"), "{}", stderr(&output));
}
