//! Error records for failures the request layer does not see: undecodable images, unknown
//! checkpoints, duplicate ids, failed renders. All are OctoAI's 422 body, as validation errors are.

use crate::generate::GenerateError;
use crate::request::{FieldError, Loc, RequestError};

/// pydantic's type for a custom validator's error (image decode, checkpoint lookup, duplicate id).
const VALUE_ERROR: &str = "value_error";

/// kiln's error type for a request that was valid but whose rendering failed.
pub const RENDER_FAILED: &str = "render_failed";

/// One error on the top-level field `field`, worded as pydantic words a validator's error.
pub fn field_error(field: &str, msg: impl std::fmt::Display) -> RequestError {
    RequestError {
        detail: vec![FieldError::at(&[Loc::from(field)], format!("Value error, {msg}"), VALUE_ERROR)],
    }
}

/// The line is not UTF-8 text: as malformed JSON, on the body.
pub fn not_utf8(reason: &str) -> RequestError {
    RequestError::body(format!("JSON decode error: {reason}"), "json_invalid")
}

/// The id is used by an earlier line: the later line is not run.
pub fn duplicate_id(id: &str, first_line: usize) -> RequestError {
    field_error("id", format!("duplicate id {id:?}: line {first_line} already has it; ids must be unique"))
}

/// Rendering failed: an input the model cannot honour on that field, anything else on the body.
pub fn render_failed(error: &GenerateError) -> RequestError {
    match error {
        GenerateError::Input { field, message } if *field != "batch" => field_error(field, message),
        other => RequestError {
            detail: vec![FieldError::at(&[], format!("rendering failed: {other}"), RENDER_FAILED)],
        },
    }
}

/// The checkpoint could not be loaded or used.
pub fn checkpoint_failed(name: &str, error: &str) -> RequestError {
    field_error("checkpoint", format!("cannot use checkpoint {name:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(error: &RequestError) -> serde_json::Value {
        serde_json::to_value(error).unwrap()
    }

    #[test]
    fn records_are_octoai_422_bodies_on_the_right_field() {
        assert_eq!(
            body(&field_error("init_image", "bad base64")),
            json!({"detail": [{"loc": ["body", "init_image"], "msg": "Value error, bad base64", "type": "value_error"}]})
        );
        let dup = body(&duplicate_id("fox", 2));
        assert_eq!(dup["detail"][0]["loc"], json!(["body", "id"]));
        assert!(dup["detail"][0]["msg"].as_str().unwrap().contains("line 2"), "{dup}");
        assert_eq!(body(&not_utf8("bad byte"))["detail"][0]["loc"], json!(["body"]));
    }

    #[test]
    fn render_failures_name_the_field_or_the_body() {
        let input = GenerateError::Input { field: "mask_image", message: "wrong size".into() };
        assert_eq!(body(&render_failed(&input))["detail"][0]["loc"], json!(["body", "mask_image"]));
        let batch = GenerateError::Input { field: "batch", message: "keys differ".into() };
        let record = body(&render_failed(&batch));
        assert_eq!(record["detail"][0]["loc"], json!(["body"]));
        assert_eq!(record["detail"][0]["type"], RENDER_FAILED);
        assert!(record["detail"][0]["msg"].as_str().unwrap().starts_with("rendering failed: "), "{record}");
    }
}
