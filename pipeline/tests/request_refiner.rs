//! `use_refiner` and `high_noise_frac` against each model family: OctoAI's default (true) asks
//! for the refiner on SDXL models only; an explicit `true` where there can be none is an error
//! on the field; inpainting takes it as diffusers' inpainting pipelines do.

mod request_common;

use kiln_pipeline::request::{RefinerUse, Request};
use kiln_runtime::checkpoint::Family;
use request_common::{body, parse, property};
use serde_json::{Value, json};

fn request(extra: Value) -> Request {
    parse(&body(extra)).request.expect("request parses")
}

fn refiner(extra: Value, family: Family) -> RefinerUse {
    request(extra).resolve(family).expect("resolves").refiner
}

#[test]
fn the_default_asks_for_the_refiner_on_sdxl_models_only() {
    assert_eq!(property("high_noise_frac")["default"], json!(0.8));
    for family in [Family::SdxlBase, Family::Ssd1b] {
        assert_eq!(refiner(json!({}), family), RefinerUse::Default { high_noise_frac: 0.8 });
        assert_eq!(
            refiner(json!({"use_refiner": true, "high_noise_frac": 0.5}), family),
            RefinerUse::Requested { high_noise_frac: 0.5 }
        );
        assert_eq!(refiner(json!({"use_refiner": false, "high_noise_frac": 0.5}), family), RefinerUse::Off);
    }
    let sd15 = json!({"width": 512, "height": 512});
    assert_eq!(refiner(sd15.clone(), Family::Sd15), RefinerUse::Off, "SD 1.5 has none to default to");
    assert_eq!(refiner(json!({"init_image": "aW1n"}), Family::SdxlRefiner), RefinerUse::Off);
}

#[test]
fn an_explicit_refiner_where_there_can_be_none_is_an_error_on_the_field() {
    for (family, extra, says) in [
        (Family::Sd15, json!({"width": 512, "height": 512}), "SD 1.5 models have none"),
        (Family::SdxlRefiner, json!({"init_image": "aW1n"}), "the SDXL refiner itself"),
    ] {
        let mut fields = extra.as_object().unwrap().clone();
        fields.insert("use_refiner".into(), json!(true));
        let errors = request(Value::Object(fields)).resolve(family).unwrap_err().detail;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].loc.last(), Some(&kiln_pipeline::request::Loc::from("use_refiner")));
        assert_eq!(errors[0].kind, "value_error");
        assert!(errors[0].msg.contains(says), "{}", errors[0].msg);
    }
}

#[test]
fn inpainting_takes_the_refiner_too() {
    let inpaint = json!({"init_image": "aW1n", "mask_image": "bWFzaw=="});
    assert_eq!(refiner(inpaint, Family::SdxlBase), RefinerUse::Default { high_noise_frac: 0.8 });
    let nine_channels = json!({"init_image": "aW1n", "mask_image": "bWFzaw==", "use_refiner": true});
    assert_eq!(refiner(nine_channels, Family::SdxlInpaint), RefinerUse::Requested { high_noise_frac: 0.8 });
}

#[test]
fn high_noise_frac_is_a_fraction() {
    for bad in [json!(-0.1), json!(1.5), json!("half")] {
        let line = parse(&body(json!({ "high_noise_frac": bad })));
        assert!(line.request.is_err(), "{bad}");
    }
    for edge in [0.0, 1.0] {
        assert_eq!(
            refiner(json!({ "high_noise_frac": edge }), Family::SdxlBase),
            RefinerUse::Default { high_noise_frac: edge },
            "0 and 1 are valid: diffusers then runs the base fully and the refiner at strength 0.3"
        );
    }
}
