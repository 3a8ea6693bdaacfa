//! The JSON shape of response lines: OctoAI's `ImageGenerationResponse` plus the id, and the
//! error record carrying OctoAI's 422 body (`HTTPValidationError`), with the spec's field names.

use kiln_pipeline::request::{ErrorRecord, ImageGeneration, RequestError, Response, parse_line};
use serde_json::{Value, json};

fn spec() -> Value {
    let path = format!("{}/../shared/spec/octoai-imagegen-openapi.json", env!("CARGO_MANIFEST_DIR"));
    let path = if std::path::Path::new(&path).exists() {
        path
    } else {
        "/work/shared/spec/octoai-imagegen-openapi.json".into()
    };
    serde_json::from_str(&std::fs::read_to_string(&path).expect("spec")).expect("spec json")
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

fn spec_keys(schema_name: &str) -> Vec<String> {
    let spec = spec();
    let mut k: Vec<String> = spec["components"]["schemas"][schema_name]["properties"]
        .as_object()
        .expect("props")
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[test]
fn response_line_shape() {
    let response = Response {
        id: "fox-1".into(),
        images: vec![ImageGeneration::new("aGVsbG8=".into(), 4_000_000_000)],
        prediction_time_ms: 1234.5,
        warnings: Vec::new(),
    };
    let v = serde_json::to_value(&response).expect("serialise");
    assert_eq!(
        v,
        json!({"id": "fox-1", "images": [{"image_b64": "aGVsbG8=", "seed": 4_000_000_000_u64, "removed_for_safety": false,
               "safety_score": null}], "prediction_time_ms": 1234.5})
    );
    let mut expected = spec_keys("ImageGenerationResponse");
    expected.push("id".into());
    expected.sort();
    assert_eq!(keys(&v), expected);
    assert_eq!(keys(&v["images"][0]), spec_keys("ImageGeneration"));
}

/// Warnings add a `warnings` list to the spec's keys; without any the key is absent (above).
#[test]
fn response_line_with_warnings() {
    let warning = "prompt: 4 tokens past the 77-token limit were dropped";
    let response = Response {
        id: "fox-2".into(),
        images: vec![ImageGeneration::new("aGVsbG8=".into(), 7)],
        prediction_time_ms: 10.0,
        warnings: vec![warning.into()],
    };
    let v = serde_json::to_value(&response).expect("serialise");
    assert_eq!(v["warnings"], json!([warning]));
    let mut expected = spec_keys("ImageGenerationResponse");
    expected.extend(["id".into(), "warnings".into()]);
    expected.sort();
    assert_eq!(keys(&v), expected);
}

#[test]
fn error_record_shape() {
    let line = parse_line(r#"{"prompt": "x", "steps": 201, "seed": [1, 0]}"#, 4);
    let error = line.request.expect_err("invalid");
    let record = ErrorRecord { id: line.id, error };
    let v = serde_json::to_value(&record).expect("serialise");
    assert_eq!(
        v,
        json!({"id": "4", "error": {"detail": [
            {"loc": ["body", "seed", 1], "msg": "Input should be greater than 0", "type": "greater_than"},
            {"loc": ["body", "steps"], "msg": "Input should be less than or equal to 200", "type": "less_than_equal"}
        ]}})
    );
    assert_eq!(keys(&v["error"]), spec_keys("HTTPValidationError"));
    assert_eq!(keys(&v["error"]["detail"][0]), spec_keys("ValidationError"));
    // One line of JSONL: no newline inside.
    assert!(!serde_json::to_string(&record).expect("line").contains('\n'));
}

#[test]
fn field_constructor_and_display() {
    let e = RequestError::field("steps", "Input should be less than or equal to 200", "less_than_equal");
    assert_eq!(
        serde_json::to_value(&e).expect("json"),
        json!({"detail": [{"loc": ["body", "steps"], "msg": "Input should be less than or equal to 200", "type": "less_than_equal"}]})
    );
    assert_eq!(e.to_string(), "body.steps: Input should be less than or equal to 200 (less_than_equal)");
}
