//! `inpaint_full_res` end to end: the mask's surroundings are inpainted and pasted back, the
//! rest of the image stays as sent; a mask that is blank after A1111's blur returns the init
//! image unchanged with a warning; `inpaint_full_res` without a mask is an error on the field.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::json;

/// A 512 x 512 mask, black but for a white square at (300..340, 100..140).
fn square_mask() -> String {
    let mask = image::GrayImage::from_fn(512, 512, |x, y| {
        image::Luma([if (300..340).contains(&x) && (100..140).contains(&y) { 255 } else { 0 }])
    });
    let mut bytes = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    image::ImageEncoder::write_image(encoder, mask.as_raw(), 512, 512, image::ExtendedColorType::L8).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn only_the_masked_area_changes_and_a_blank_mask_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let init_b64 = noise_png(512, 512, 11, false);
    let blank = {
        let mut bytes = Vec::new();
        let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
        let pixels = vec![0u8; 512 * 512];
        image::ImageEncoder::write_image(encoder, &pixels, 512, 512, image::ExtendedColorType::L8).unwrap();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let init = format!(r#", "init_image": "{init_b64}", "strength": 1.0, "inpaint_full_res": true"#);
    let lines = [
        request_sd15(
            "square",
            3,
            &format!(r#"{init}, "mask_image": "{}", "inpaint_full_res_padding": 8"#, square_mask()),
        ),
        request_sd15("blank", 3, &format!(r#"{init}, "mask_image": "{blank}""#)),
        request_sd15("no-mask", 3, &init),
    ];
    let requests = write_requests(dir.path(), &lines);
    let out = dir.path().join("out");
    let output = render_sd15(&requests, &out, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let records = records(&out);
    let original =
        image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(&init_b64).unwrap())
            .unwrap()
            .to_rgb8();

    let square = pixels(&records["square"]).remove(0);
    assert!(square != original, "the masked area was inpainted");
    // The square's box, blurred (about 10 pixels), padded by 8, is grown to a square region;
    // far from it every pixel is the init image's.
    for (x, y, p) in square.enumerate_pixels() {
        if !(270..370).contains(&x) || !(70..170).contains(&y) {
            assert_eq!(p, original.get_pixel(x, y), "({x}, {y}) is far from the mask");
        }
    }
    assert!(records["square"].get("warnings").is_none(), "{}", records["square"]);

    assert!(pixels(&records["blank"]).remove(0) == original, "a blank mask returns the init image");
    let warnings = records["blank"]["warnings"].to_string();
    assert!(warnings.contains("blank") && warnings.contains("unchanged"), "{warnings}");

    let error = first_error(&records["no-mask"]);
    assert_eq!(error["loc"], json!(["body", "inpaint_full_res"]), "{error}");
}
