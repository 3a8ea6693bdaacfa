//! IP-Adapter requests end to end: `ip_adapters/` and `image_encoders/` in the asset library
//! (the encoder picked by the adapter's embedding width), the reference image cropped as CLIP
//! takes it, `ip_adapter_method` and `ip_adapter_mask_image`, and bad input per field.

mod common;

use std::path::Path;

use base64::Engine as _;
use common::*;
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/ip_adapter");
const TINY_SDXL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny/sdxl");

/// An SDXL line at 1024 x 1024 with guidance (both halves see the adapter).
fn line(id: &str, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}", "prompt": "a lighthouse on a cliff", "negative_prompt": "blurry", "steps": 2, "cfg_scale": 5, "seed": 31, "image_encoding": "png", "sampler": "K_EULER", "use_refiner": false{extra}}}"#
    )
}

fn b64(file: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(Path::new(FIXTURES).join(file)).unwrap())
}

/// A library with the tiny SDXL adapter under the default name and the tiny CLIP vision tower.
fn library(root: &Path) -> std::path::PathBuf {
    let assets = root.join("assets");
    std::fs::create_dir_all(assets.join("ip_adapters")).unwrap();
    std::fs::copy(
        Path::new(FIXTURES).join("ip-adapter_tiny_sdxl.safetensors"),
        assets.join("ip_adapters/ip-adapter_sdxl.safetensors"),
    )
    .unwrap();
    copy_dir(&Path::new(FIXTURES).join("image_encoder"), &assets.join("image_encoders/tiny-vision"));
    assets
}

/// A 64 x 32 mask (2:1, the output is 1:1), white on its left half, base64.
fn wide_mask() -> String {
    let mask = image::GrayImage::from_fn(64, 32, |x, _| image::Luma([if x < 32 { 255 } else { 0 }]));
    let mut bytes = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    image::ImageEncoder::write_image(encoder, mask.as_raw(), 64, 32, image::ExtendedColorType::L8).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn render_sdxl(requests: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    render(requests, out, &[&["--model", TINY_SDXL], extra].concat())
}

#[test]
fn ip_adapter_requests_render_and_bad_ones_get_errors_on_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let assets = library(dir.path());
    let (style, mask) = (b64("style_a.png"), b64("ip_mask.png"));
    let lines = [
        line("plain", ""),
        line("full", &format!(r#", "ip_adapter_image": "{style}", "ip_adapter_scale": 0.8"#)),
        line("style", &format!(r#", "ip_adapter_image": "{style}", "ip_adapter_method": "style""#)),
        line("masked", &format!(r#", "ip_adapter_image": "{style}", "ip_adapter_mask_image": "{mask}""#)),
        line("unknown", &format!(r#", "ip_adapter": "plus_face", "ip_adapter_image": "{style}""#)),
        line("bad-image", r#", "ip_adapter_image": "aW1hZ2U=""#),
        line("bad-method", &format!(r#", "ip_adapter_image": "{style}", "ip_adapter_method": "layout""#)),
        line("mask-only", &format!(r#", "ip_adapter_mask_image": "{mask}""#)),
        line(
            "wide-mask",
            &format!(r#", "ip_adapter_image": "{style}", "ip_adapter_mask_image": "{}""#, wide_mask()),
        ),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let assets_arg = assets.to_str().unwrap();
    let output = render_sdxl(&requests, &out, &["--assets", assets_arg]);
    assert_eq!(output.status.code(), Some(1), "some lines fail: {}", stderr(&output));
    let records = records(&out);
    let image = |id: &str| pixels(&records[id]).remove(0);
    let (plain, full, style, masked) = (image("plain"), image("full"), image("style"), image("masked"));
    assert!(full != plain && style != plain && masked != plain, "the adapter changes the image");
    assert!(style != full && masked != full, "the method and the mask matter");
    // A mask of another aspect ratio is stretched to the output size, as diffusers' preprocess.
    let wide = image("wide-mask");
    assert!(wide != masked && wide != full, "the 2:1 mask guides part of the image");

    let error_at = |id: &str| first_error(&records[id]).clone();
    let unknown = error_at("unknown");
    assert_eq!(unknown["loc"], json!(["body", "ip_adapter"]), "{unknown}");
    assert!(
        unknown["msg"].as_str().unwrap().contains("ip-adapter_sdxl"),
        "lists the library's adapters: {unknown}"
    );
    assert_eq!(error_at("bad-image")["loc"], json!(["body", "ip_adapter_image"]));
    assert_eq!(error_at("bad-method")["loc"], json!(["body", "ip_adapter_method"]));
    let mask_only = error_at("mask-only");
    assert_eq!(
        (mask_only["loc"].clone(), mask_only["type"].clone()),
        (json!(["body", "ip_adapter_image"]), json!("missing"))
    );
}

#[test]
fn an_adapter_without_a_fitting_image_encoder_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let assets = library(dir.path());
    std::fs::remove_dir_all(assets.join("image_encoders/tiny-vision")).unwrap();
    let requests = write_requests(
        dir.path(),
        &[line("full", &format!(r#", "ip_adapter_image": "{}""#, b64("style_a.png")))],
    );
    let out = dir.path().join("out");
    let output = render_sdxl(&requests, &out, &["--assets", assets.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let error = first_error(&records(&out)["full"]).clone();
    assert_eq!(error["loc"], json!(["body", "ip_adapter"]), "{error}");
    assert!(error["msg"].as_str().unwrap().contains("24-wide image embeddings"), "{error}");
}
