//! Helpers shared by the request tests: the spec-derived fixtures and small accessors.
#![allow(dead_code)]

use kiln_pipeline::request::{FieldError, Line, RequestError, parse_line};
use serde_json::Value;

/// `fixtures/request/schema.json` (made from the OpenAPI spec by tools/make_request_fixtures.py).
pub fn schema() -> Value {
    read("schema.json")
}

/// `fixtures/request/pydantic_errors.json`.
pub fn pydantic_cases() -> Value {
    read("pydantic_errors.json")
}

fn read(name: &str) -> Value {
    let path = format!("{}/../fixtures/request/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One property's description in schema.json.
pub fn property(name: &str) -> Value {
    schema()["properties"][name].clone()
}

/// A valid minimal request with `extra` fields merged in.
pub fn body(extra: Value) -> Value {
    let mut body = serde_json::json!({"prompt": "a lighthouse on a cliff at dusk"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// Parses a JSON body as line 7.
pub fn parse(body: &Value) -> Line {
    parse_line(&body.to_string(), 7)
}

/// The request's errors (empty when it parsed).
pub fn errors(line: &Line) -> Vec<FieldError> {
    line.request.as_ref().err().map(|e: &RequestError| e.detail.clone()).unwrap_or_default()
}

/// The errors whose loc starts with `["body", field]`.
pub fn errors_at(line: &Line, field: &str) -> Vec<FieldError> {
    let field = Value::from(field);
    errors(line).into_iter().filter(|e| loc(e).get(1) == Some(&field)).collect()
}

/// An error's loc as JSON.
pub fn loc(error: &FieldError) -> Vec<Value> {
    match serde_json::to_value(&error.loc) {
        Ok(Value::Array(items)) => items,
        other => panic!("loc does not serialise to a list: {other:?}"),
    }
}

/// The error types at `field`.
pub fn kinds_at(line: &Line, field: &str) -> Vec<String> {
    errors_at(line, field).into_iter().map(|e| e.kind).collect()
}
