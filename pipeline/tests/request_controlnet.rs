//! The ControlNet fields of a request: which requests are ControlNet requests, their defaults,
//! and the errors OctoAI's schema and kiln's rules give.

mod request_common;

use kiln_pipeline::request::control::ControlRequest;
use kiln_runtime::checkpoint::Family;
use request_common::{body, errors, kinds_at, parse};
use serde_json::json;

fn control(extra: serde_json::Value) -> Option<ControlRequest> {
    let line = parse(&body(extra));
    line.request.as_ref().unwrap_or_else(|e| panic!("{e}")).control.clone()
}

#[test]
fn a_control_image_makes_a_controlnet_request_with_the_schema_defaults() {
    let c = control(json!({"controlnet_image": "aW1n"})).unwrap();
    assert_eq!((c.name.as_deref(), c.name()), (None, "canny"), "no name: the default Canny ControlNet");
    assert_eq!((c.scale, c.early_stop, c.preprocess), (1.0, None, true));
    assert!(c.is_canny());
    let c = control(json!({
        "controlnet": "depth_sdxl", "controlnet_image": "aW1n", "controlnet_conditioning_scale": 0.5,
        "controlnet_early_stop": 0.25, "controlnet_preprocess": false,
    }))
    .unwrap();
    assert_eq!((c.name(), c.scale, c.early_stop, c.preprocess), ("depth_sdxl", 0.5, Some(0.25), false));
    assert!(!c.is_canny());
    assert!(
        control(json!({"controlnet": "octoai:Canny_SDXL", "controlnet_image": "aW1n"})).unwrap().is_canny()
    );
}

#[test]
fn the_other_fields_alone_change_nothing() {
    for extra in [
        json!({"controlnet_conditioning_scale": 0.3}),
        json!({"controlnet_early_stop": 0.5}),
        json!({"controlnet_preprocess": false}),
        json!({"controlnet": null, "controlnet_image": null}),
    ] {
        assert_eq!(control(extra.clone()), None, "{extra}");
    }
}

#[test]
fn a_controlnet_engine_or_name_without_an_image_is_an_error_on_the_image() {
    for extra in [json!({"engine": "controlnet-sdxl"}), json!({"controlnet": "canny"})] {
        let line = parse(&body(extra.clone()));
        assert_eq!(kinds_at(&line, "controlnet_image"), ["missing"], "{extra}");
        let errs = errors(&line);
        assert!(
            errs[0].msg.contains("Required for controlnet engines")
                || errs[0].msg.contains("required for controlnet")
        );
    }
}

#[test]
fn out_of_range_values_are_schema_errors() {
    let line = parse(&body(json!({"controlnet_image": "aW1n", "controlnet_early_stop": 1.5})));
    assert_eq!(kinds_at(&line, "controlnet_early_stop"), ["less_than_equal"]);
    let line = parse(&body(json!({"controlnet_image": "aW1n", "controlnet_conditioning_scale": -0.1})));
    assert_eq!(kinds_at(&line, "controlnet_conditioning_scale"), ["greater_than_equal"]);
    let line = parse(&body(json!({"controlnet_image": 3})));
    assert_eq!(kinds_at(&line, "controlnet_image"), ["string_type"]);
}

#[test]
fn resolving_checks_the_scale_and_refuses_inpainting() {
    let resolve = |extra: serde_json::Value| parse(&body(extra)).request.unwrap().resolve(Family::SdxlBase);
    let r = resolve(json!({"controlnet_image": "aW1n", "controlnet_early_stop": 0.5})).unwrap();
    assert_eq!(r.control.as_ref().map(|c| c.early_stop), Some(Some(0.5)));
    assert!(r.job.control.is_none(), "the image is decoded by the runner");
    // pydantic takes 1e400 as infinity; a scale of infinity cannot render.
    let text = r#"{"prompt": "a fox", "controlnet_image": "aW1n", "controlnet_conditioning_scale": 1e400}"#;
    let err =
        kiln_pipeline::request::parse_line(text, 1).request.unwrap().resolve(Family::SdxlBase).unwrap_err();
    assert_eq!(err.detail[0].kind, "value_error", "{err}");
    let err =
        resolve(json!({"controlnet_image": "aW1n", "init_image": "aW1n", "mask_image": "aW1n"})).unwrap_err();
    assert_eq!(err.detail[0].kind, "not_implemented", "{err}");
    // SD 1.5 takes ControlNets too (by name); only the controlnet-sdxl engine is SDXL's.
    assert!(resolve(json!({"controlnet": "canny_sd15", "controlnet_image": "aW1n"})).is_ok());
    let sd15 = parse(&body(
        json!({"controlnet": "canny_sd15", "controlnet_image": "aW1n", "width": 512, "height": 512}),
    ))
    .request
    .unwrap()
    .resolve(Family::Sd15);
    assert!(sd15.is_ok(), "{:?}", sd15.err());
}
