//! The `engine` field end to end: an SSD-1B checkpoint renders requests for `ssd` (and requests
//! that do not say), and a request written for another engine is an error record on `engine`
//! while the run goes on.

mod common;

use common::*;
use serde_json::json;

const TINY_SSD_1B: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny/ssd_1b");

#[test]
fn an_ssd_1b_checkpoint_takes_ssd_requests_and_refuses_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        request("ssd", 7, r#", "engine": "ssd""#),
        request("any", 7, ""),
        request("sdxl", 7, r#", "engine": "sdxl""#),
        request("sd", 7, r#", "engine": "sd", "width": 512, "height": 512"#),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let output = render(&requests, &out, &["--model", TINY_SSD_1B]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let records = records(&out);
    assert_eq!(pixels(&records["ssd"]), pixels(&records["any"]), "engine only checks, it changes nothing");
    for id in ["sdxl", "sd"] {
        let error = first_error(&records[id]);
        assert_eq!(error["loc"], json!(["body", "engine"]), "{id}: {error}");
        let msg = error["msg"].as_str().unwrap();
        assert!(msg.contains("SSD-1B") && msg.contains("'ssd'"), "{id}: {msg}");
    }
}
