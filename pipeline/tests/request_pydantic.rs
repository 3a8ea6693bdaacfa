//! kiln's validation errors against pydantic v2's for the same bodies: the fixture holds, for
//! each line, the errors a pydantic model generated from OctoAI's OpenAPI spec reports
//! (tools/make_request_fixtures.py), unknown fields included (`extra_forbidden`, with the value
//! sent as `input`), numbers too wide for serde_json (`1e400`, a 400-digit integer) and the
//! line's id (which such numbers must not lose). kiln's own `not_implemented` errors (fields pydantic accepts but kiln
//! cannot honour) are set aside before comparing; everything else — loc, type, message, input
//! and order — must match.

mod request_common;

use kiln_pipeline::request::parse_line;
use request_common::pydantic_cases;
use serde_json::Value;

#[test]
fn errors_match_pydantic_for_every_case() {
    let cases = pydantic_cases();
    let cases = cases["cases"].as_array().expect("cases");
    assert!(cases.len() > 100, "fixture too small");
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let text = case["line"].as_str().expect("line");
        let line = parse_line(text, i + 1);
        let kiln: Vec<Value> = match &line.request {
            Ok(_) => Vec::new(),
            Err(e) => e
                .detail
                .iter()
                .filter(|d| d.kind != "not_implemented")
                .map(|d| serde_json::to_value(d).expect("serialise"))
                .collect(),
        };
        let expected = case["errors"].as_array().expect("errors");
        // A line whose body has an id is keyed by it, whatever else is wrong with it.
        if let Some(id) = case["id"].as_str()
            && line.id != id
        {
            mismatches.push(format!("{text}\n  keyed by {:?}, not its id {id:?}", line.id));
        }
        if &kiln != expected {
            let short: String = text.chars().take(100).collect();
            mismatches.push(format!("{short}\n  kiln:     {kiln:?}\n  pydantic: {expected:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn valid_cases_parse_to_requests() {
    let cases = pydantic_cases();
    let valid: Vec<&Value> = cases["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["errors"].as_array().is_some_and(|e| e.is_empty()))
        .collect();
    assert!(valid.len() >= 10);
    for case in valid {
        let text = case["line"].as_str().expect("line");
        let line = parse_line(text, 1);
        if let Err(e) = &line.request {
            assert!(e.detail.iter().all(|d| d.kind == "not_implemented"), "{text}: {e}");
        }
    }
}
