//! The `kiln serve` binary: OctoAI's own client code (examples/octoai_client.py, plain
//! `requests`) against it, bearer tokens, SIGTERM with a request in flight (answered, then exit
//! 0), and the refusal to listen openly without tokens.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Whether `python3` with `requests` is here; CI (`KILN_REQUIRE_PYTHON_REQUESTS=1`) insists.
fn python_with_requests() -> bool {
    let found = Command::new("python3").args(["-c", "import requests"]).status().is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("KILN_REQUIRE_PYTHON_REQUESTS").is_none(),
            "python3 with requests is required (KILN_REQUIRE_PYTHON_REQUESTS is set)"
        );
        eprintln!("skipped: python3 with requests not found");
    }
    found
}

#[test]
fn octoais_client_code_works_against_kiln_with_a_token_and_sigterm_finishes_the_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "test-token\n").unwrap();
    let (mut child, addr, lines) =
        serve(&["--token-file", tokens.to_str().unwrap(), "--batch-window-ms", "5"]);
    let url = format!("http://{addr}/generate/sdxl");

    if python_with_requests() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/octoai_client.py");
        let out = dir.path().join("client");
        let run = |token: &str| {
            Command::new("python3")
                .arg(script)
                .arg(&url)
                .arg("--out")
                .arg(&out)
                .args(["--token", token])
                .output()
                .unwrap()
        };
        let refused = run("wrong-token");
        assert!(!refused.status.success(), "a wrong token is refused");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("401"), "{}", stderr(&refused));
        let output = run("test-token");
        assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
        for i in 0..2 {
            let image = image::open(out.join(format!("result{i}.png"))).unwrap();
            assert_eq!((image.width(), image.height()), (1024, 1024));
        }
    }

    // SIGTERM while a request renders: it is answered, then the server exits 0.
    let body =
        r#"{"prompt": "a boat", "steps": 6, "seed": 9, "width": 1024, "height": 1024, "use_refiner": false}"#;
    let in_flight = {
        let url = url.clone();
        std::thread::spawn(move || {
            let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
            let mut response = agent
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Authorization", "Bearer test-token")
                .send(body)
                .unwrap();
            (
                response.status().as_u16(),
                response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap(),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let sent = Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let (status, answer) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{}", &answer[..answer.len().min(300)]);
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    let log: Vec<String> = lines.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("shutting down")), "{log:?}");
}

#[test]
fn an_open_address_without_tokens_is_refused() {
    let output = kiln().args(["serve", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--token-file"), "{}", stderr(&output));
}
