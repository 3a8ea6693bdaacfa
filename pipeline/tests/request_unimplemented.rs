//! Fields of OctoAI's API that kiln does not implement: asking for the feature is an error
//! naming the field (type `not_implemented`); sending the default or null is accepted. (The
//! ControlNet fields are implemented: request_controlnet.rs.)

mod request_common;

use request_common::{body, errors, kinds_at, loc, parse, property};
use serde_json::{Value, json};

fn not_implemented(field: &str, value: Value) {
    let line = parse(&body(json!({ field: value.clone() })));
    let errs = errors(&line);
    assert_eq!(errs.len(), 1, "{field} = {value}: {errs:?}");
    assert_eq!(errs[0].kind, "not_implemented", "{field} = {value}");
    assert_eq!(loc(&errs[0]), vec![json!("body"), json!(field)]);
    assert!(errs[0].msg.contains(field), "{}", errs[0].msg);
    assert!(line.warnings.is_empty(), "{field}: {:?}", line.warnings);
}

fn accepted(field: &str, value: Value) {
    let line = parse(&body(json!({ field: value.clone() })));
    assert!(line.request.is_ok(), "{field} = {value}: {:?}", line.request.err());
}

#[test]
fn each_unimplemented_field_is_an_error_naming_it() {
    not_implemented("transfer_images", json!({"sks": ["aW1n"]}));
    not_implemented("transfer_images", json!({}));
    // IP-Adapter fields kiln does not read (request_ip_adapter.rs has the ones it does).
    not_implemented("ip_adapter_image_embeds", json!("aW1n"));
}

#[test]
fn defaults_and_nulls_of_those_fields_are_accepted() {
    for field in [
        "controlnet",
        "controlnet_image",
        "controlnet_early_stop",
        "transfer_images",
        "loras",
        "textual_inversions",
        "vae",
        "ip_adapter",
    ] {
        accepted(field, Value::Null);
    }
    // The schema's defaults, read from the spec.
    for field in ["controlnet_conditioning_scale", "controlnet_preprocess", "inpaint_full_res"] {
        let default = property(field)["default"].clone();
        assert!(!default.is_null(), "{field} has a default in the spec");
        accepted(field, default);
    }
    accepted("loras", json!({}));
    accepted("textual_inversions", json!({}));
    // The refiner is implemented: use_refiner (the spec's default is true) and high_noise_frac
    // are read (see request_refiner.rs).
    assert_eq!(property("use_refiner")["default"], json!(true));
    accepted("use_refiner", json!(false));
    accepted("use_refiner", json!(true));
    accepted("high_noise_frac", json!(0.3));
    accepted("inpaint_full_res_padding", json!(16));
    accepted("inpaint_full_res", json!(true));
    accepted("log_prompt", json!(true));
}

#[test]
fn several_unimplemented_fields_are_all_reported() {
    let line = parse(&body(
        json!({"transfer_images": {"v": ["w"]}, "ip_adapter_image_embeds": "aW1n", "ip_adapter_plus": 1, "steps": 0}),
    ));
    for field in ["transfer_images", "ip_adapter_image_embeds", "ip_adapter_plus"] {
        assert_eq!(kinds_at(&line, field), ["not_implemented"], "{field}");
    }
    assert_eq!(kinds_at(&line, "steps"), ["greater_than"]);
}

#[test]
fn loras_are_read_sorted_by_name_with_finite_weights() {
    let line =
        parse(&body(json!({"loras": {"octoai:paint-splash": 0.3, "octoai:crayon-style": "0.7", "neg": -1}})));
    let request = line.request.unwrap();
    assert_eq!(
        request.loras,
        [
            ("neg".to_owned(), -1.0),
            ("octoai:crayon-style".to_owned(), 0.7),
            ("octoai:paint-splash".to_owned(), 0.3)
        ]
    );
    // pydantic takes an infinite weight; resolving refuses it, naming the LoRA.
    let line = parse(&body(json!({"loras": {"a": "inf", "b": 1.0}})));
    let errors = line.request.unwrap().resolve(kiln_runtime::checkpoint::Family::Sd15).unwrap_err().detail;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, "value_error");
    assert_eq!(errors[0].loc.last(), Some(&kiln_pipeline::request::Loc::from("a")));
}

#[test]
fn textual_inversions_are_read_sorted_by_name() {
    let line =
        parse(&body(json!({"textual_inversions": {"octoai:NegativeXL": "negativeXL_D", "a": "kilnstyle"}})));
    let request = line.request.unwrap();
    assert_eq!(
        request.textual_inversions,
        [
            ("a".to_owned(), "kilnstyle".to_owned()),
            ("octoai:NegativeXL".to_owned(), "negativeXL_D".to_owned())
        ]
    );
}

#[test]
fn a_badly_typed_unimplemented_field_gets_the_type_error_only() {
    let line = parse(&body(json!({"controlnet": 5, "loras": {"a": "x"}})));
    assert_eq!(kinds_at(&line, "controlnet"), ["string_type"]);
    assert_eq!(kinds_at(&line, "loras"), ["float_parsing"]);
}
