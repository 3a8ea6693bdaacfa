//! Error records for failures the request layer does not see: undecodable images, unknown
//! checkpoints, duplicate ids, failed renders. All are OctoAI's 422 body, as validation errors are.

use crate::generate::GenerateError;
use crate::models::ModelError;
use crate::request::{FieldError, Loc, RequestError};
use crate::samplers::SamplerError;

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

/// A value error at a nested location (`["loras", NAME]`).
pub fn field_error_at(loc: &[&str], msg: impl std::fmt::Display) -> RequestError {
    let loc: Vec<Loc> = loc.iter().map(|&l| Loc::from(l)).collect();
    RequestError { detail: vec![FieldError::at(&loc, format!("Value error, {msg}"), VALUE_ERROR)] }
}

/// The line is not UTF-8 text: as malformed JSON, on the body.
pub fn not_utf8(reason: &str) -> RequestError {
    RequestError::body(format!("JSON decode error: {reason}"), "json_invalid")
}

/// The id is used by an earlier line: the later line is not run.
pub fn duplicate_id(id: &str, first_line: usize) -> RequestError {
    field_error("id", format!("duplicate id {id:?}: line {first_line} already has it; ids must be unique"))
}

/// Rendering failed: on the request field that can fix it where there is one (see
/// `failed_field`), else on the body (type `render_failed`).
pub fn render_failed(error: &GenerateError) -> RequestError {
    match (failed_field(error), error) {
        (Some(field), GenerateError::Input { message, .. }) => field_error(field, message),
        (Some("sampler"), other) => {
            field_error("sampler", format!("the model's scheduler cannot run it: {other}"))
        }
        (Some(field), other) => field_error(field, other),
        (None, other) => RequestError {
            detail: vec![FieldError::at(&[], format!("rendering failed: {other}"), RENDER_FAILED)],
        },
    }
}

/// The request field a render failure is about: the field an input error names; `steps` for
/// a step count the sampler cannot run (LCM past its 50 steps, DDPM past the training
/// timesteps); `sampler` for a sampler the model's scheduler configuration cannot run;
/// `checkpoint` for weights, configs or tokenizer files that cannot be read. `None` for what no
/// field can fix (a failed tensor op, mixed batches).
fn failed_field(error: &GenerateError) -> Option<&'static str> {
    match error {
        GenerateError::Input { field, .. } if *field != "batch" => Some(field),
        GenerateError::Sampler(SamplerError::Steps(_)) => Some("steps"),
        GenerateError::Sampler(SamplerError::Config { .. } | SamplerError::UnknownName { .. }) => {
            Some("sampler")
        }
        GenerateError::Model(
            ModelError::Checkpoint(_) | ModelError::WeightShape { .. } | ModelError::Tokenizer(_),
        ) => Some("checkpoint"),
        _ => None,
    }
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

    #[test]
    fn sampler_and_checkpoint_failures_name_their_field() {
        let at = |error: GenerateError| body(&render_failed(&error))["detail"][0]["loc"].clone();
        let steps = SamplerError::Steps("LCM runs at most 50 steps, 51 asked".into());
        assert_eq!(at(GenerateError::Sampler(steps)), json!(["body", "steps"]));
        let config = SamplerError::config("clip_sample", "DDPM sample clipping is not supported");
        let record = body(&render_failed(&GenerateError::Sampler(config)));
        assert_eq!(record["detail"][0]["loc"], json!(["body", "sampler"]));
        assert!(record["detail"][0]["msg"].as_str().unwrap().contains("clip_sample"), "{record}");
        let shape =
            ModelError::WeightShape { name: "unet.conv_in.weight".into(), expected: vec![1], got: vec![2] };
        assert_eq!(at(GenerateError::Model(shape)), json!(["body", "checkpoint"]));
        let clip = GenerateError::Input { field: "clip_skip", message: "at most 4".into() };
        assert_eq!(at(clip), json!(["body", "clip_skip"]));
        let op = ModelError::input("unet", "channels differ");
        assert_eq!(
            at(GenerateError::Model(op)),
            json!(["body"]),
            "no field can fix a model's internal error"
        );
    }
}
