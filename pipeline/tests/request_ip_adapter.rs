//! The IP-Adapter fields of a request (newer OctoAI endpoints' `ip_adapter*`): which requests
//! are IP-Adapter requests, their defaults, and their errors.

mod request_common;

use kiln_pipeline::generate::IpMethod;
use kiln_pipeline::request::ip::IpRequest;
use kiln_runtime::checkpoint::Family;
use request_common::{body, kinds_at, parse};
use serde_json::json;

fn ip(extra: serde_json::Value) -> Option<IpRequest> {
    let line = parse(&body(extra));
    line.request.as_ref().unwrap_or_else(|e| panic!("{e}")).ip.clone()
}

#[test]
fn an_image_makes_an_ip_adapter_request_with_defaults() {
    let r = ip(json!({"ip_adapter_image": "aW1n"})).unwrap();
    assert_eq!(
        (r.name(), r.scale, r.method, r.mask.as_deref()),
        ("ip-adapter_sdxl", 1.0, IpMethod::Full, None)
    );
    let r = ip(json!({
        "ip_adapter": "ip-adapter_sdxl_vit-h", "ip_adapter_image": "aW1n", "ip_adapter_scale": 0.6,
        "ip_adapter_method": "composition", "ip_adapter_mask_image": "bWFzaw==",
    }))
    .unwrap();
    assert_eq!((r.name(), r.scale, r.method), ("ip-adapter_sdxl_vit-h", 0.6, IpMethod::Composition));
    assert_eq!(r.mask.as_deref(), Some("bWFzaw=="));
    assert_eq!(
        ip(json!({"ip_adapter_image": "aW1n", "ip_adapter_method": "style"})).unwrap().method,
        IpMethod::Style
    );
    assert_eq!(ip(json!({"ip_adapter_scale": 0.5})), None, "the scale alone changes nothing");
}

#[test]
fn bad_values_are_errors_on_their_fields() {
    let line = parse(&body(json!({"ip_adapter_image": "aW1n", "ip_adapter_method": "layout"})));
    assert_eq!(kinds_at(&line, "ip_adapter_method"), ["enum"]);
    let line = parse(&body(json!({"ip_adapter_image": "aW1n", "ip_adapter_scale": -1})));
    assert_eq!(kinds_at(&line, "ip_adapter_scale"), ["greater_than_equal"]);
    for extra in [
        json!({"ip_adapter": "x"}),
        json!({"ip_adapter_mask_image": "aW1n"}),
        json!({"ip_adapter_method": "full"}),
    ] {
        let line = parse(&body(extra.clone()));
        assert_eq!(kinds_at(&line, "ip_adapter_image"), ["missing"], "{extra}");
    }
    // With inpainting: not implemented.
    let resolved =
        parse(&body(json!({"ip_adapter_image": "aW1n", "init_image": "aW1n", "mask_image": "aW1n"})))
            .request
            .unwrap()
            .resolve(Family::SdxlBase);
    assert_eq!(resolved.unwrap_err().detail[0].kind, "not_implemented");
}
