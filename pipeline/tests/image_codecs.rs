//! Image codecs against PIL (Pillow 13): decodes, luma, Lanczos resize, encode round trips, the
//! outpainting fill, and typed errors (never panics) for hostile input.
//! Fixtures: `tools/make_image_fixtures.py` -> `fixtures/images/`.
//!
//! Bounds, measured with `cargo test -p kiln-pipeline --test image_codecs -- --nocapture`:
//! - PNG, lossless WebP, lossy WebP, luma and Lanczos resize: exact. (image-webp 0.2.4 reproduces
//!   libwebp's lossy decode bit for bit on this file; kiln's resampler is a port of PIL's.)
//! - JPEG: zune-jpeg vs PIL's libjpeg-turbo differ by at most 3 levels (mean 0.36) on the 4:2:0
//!   files and 2 (mean 0.02) on the 4:4:4 progressive one: the gap is mostly the chroma upsampling
//!   filter, plus IDCT rounding, both within what the JPEG standard allows a decoder. The bound is
//!   4 levels at any pixel and a mean of 0.5.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use kiln_pipeline::image::{
    ImageEncoding, ImageError, MAX_SIDE, decode_base64, decode_bytes, encode, encode_base64, fill_masked,
    luma, rgb_from_rgb8, to_mask, to_rgb,
};
use kiln_pipeline::models::vae::Rgb8Image;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::SafeTensors;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/images/");
/// JPEG decoders may differ by this much at a pixel (see the header).
const JPEG_DECODER_MAX: u8 = 4;
/// ... and by this much on average.
const JPEG_DECODER_MEAN: f64 = 0.5;

fn file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A reference array `[H, W, C]` from `reference.safetensors` as (width, height, channels, bytes).
fn reference(name: &str) -> (u32, u32, usize, Vec<u8>) {
    let bytes = file("reference.safetensors");
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape = view.shape();
    (shape[1] as u32, shape[0] as u32, shape[2], view.data().to_vec())
}

fn reference_rgb(name: &str) -> RgbImage {
    let (w, h, c, data) = reference(name);
    assert_eq!(c, 3, "{name}");
    RgbImage::from_raw(w, h, data).unwrap()
}

fn reference_gray(name: &str) -> GrayImage {
    let (w, h, c, data) = reference(name);
    assert_eq!(c, 1, "{name}");
    GrayImage::from_raw(w, h, data).unwrap()
}

/// Max and mean absolute difference over all channels of two same-sized images (printed).
fn diff(what: &str, ours: &[u8], theirs: &[u8]) -> (u8, f64) {
    assert_eq!(ours.len(), theirs.len(), "{what}: sizes differ");
    let max = ours.iter().zip(theirs).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
    let mean =
        ours.iter().zip(theirs).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>() / ours.len() as f64;
    eprintln!("{what}: max |diff| {max}, mean |diff| {mean:.4}");
    (max, mean)
}

fn decode_file(name: &str) -> DynamicImage {
    decode_bytes(&file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn photo() -> RgbImage {
    reference_rgb("photo")
}

/// `chunk` (type and data) as PNG chunk bytes: length, type, data, CRC.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    [&(data.len() as u32).to_be_bytes()[..], kind, data, &crc.sum().to_be_bytes()].concat()
}

/// A few kilobytes must not make kiln allocate hundreds of megabytes: a lossless WebP of
/// 8192 x 8192 flat pixels (2.6 KB; decoding it took 473 MB) is over the decoder memory cap.
#[test]
fn a_small_webp_of_many_pixels_is_over_the_memory_cap() {
    use image::ImageEncoder;
    let flat = image::RgbaImage::from_pixel(8192, 8192, image::Rgba([10, 20, 30, 255]));
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .write_image(flat.as_raw(), 8192, 8192, image::ExtendedColorType::Rgba8)
        .unwrap();
    drop(flat);
    assert!(webp.len() < 64 << 10, "{} bytes", webp.len());
    let error = decode_bytes(&webp).unwrap_err();
    assert!(matches!(error, ImageError::TooMuchMemory { format: "WebP", .. }), "{error}");
    assert!(error.to_string().contains("384 MiB"), "{error}");
}

/// A PNG's ICC profile that inflates to 512 MiB from under a megabyte is dropped unread (kiln,
/// like diffusers with PIL, does no colour management), leaving the pixels PIL gives.
#[test]
fn a_png_icc_profile_bomb_is_not_inflated() {
    let mut profile = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        std::io::Write::write_all(&mut profile, &zeros).unwrap();
    }
    let iccp = [&b"bomb\0\0"[..], &profile.finish().unwrap()].concat();
    assert!(iccp.len() < 1 << 20, "{} bytes inflate to 512 MiB", iccp.len());
    let png = file("photo.png");
    let with_bomb = [&png[..33], &png_chunk(b"iCCP", &iccp), &png[33..]].concat(); // after IHDR
    let image = decode_bytes(&with_bomb).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(image.to_rgb8(), photo());
}

/// A PNG whose only fault is a missing `IEND` chunk: PIL (`Image.open(...).load()`) loads it with
/// all its pixels, so kiln does too; cut inside a chunk it stays an error, as for PIL.
#[test]
fn a_png_missing_only_its_end_chunk_loads_as_pil_loads_it() {
    let bytes = file("photo.png");
    assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND");
    let without_end = &bytes[..bytes.len() - 12];
    let image = decode_bytes(without_end).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(image.to_rgb8(), photo());
    let error = decode_bytes(&bytes[..bytes.len() - 14]).unwrap_err();
    assert!(matches!(error, ImageError::Corrupt { format: "PNG", .. }), "{error}");
}

#[test]
fn png_and_lossless_webp_decode_to_pils_pixels_exactly() {
    for name in ["photo.png", "photo_lossless.webp"] {
        let image = decode_file(name);
        assert_eq!(image.to_rgb8(), photo(), "{name}");
        assert_eq!(to_rgb(&image, 61, 45), photo(), "{name} through to_rgb");
    }
    assert_eq!(decode_file("gray.png").to_rgb8(), reference_rgb("gray_rgb"));
    let rgb16 = decode_file("rgb16.png");
    assert!(matches!(rgb16, DynamicImage::ImageRgb16(_)));
    assert_eq!(to_rgb(&rgb16, 9, 7), reference_rgb("rgb16_rgb"), "16-bit: PIL keeps the high byte");
}

#[test]
fn lossy_webp_decodes_to_pils_pixels() {
    let ours = decode_file("photo_lossy.webp").to_rgb8();
    let theirs = reference_rgb("photo_lossy_webp");
    assert_ne!(theirs, photo(), "the lossy fixture must differ from its source");
    assert_eq!(diff("lossy WebP", ours.as_raw(), theirs.as_raw()).0, 0);
}

#[test]
fn jpeg_decodes_to_pils_pixels_within_decoder_rounding() {
    for (name, reference_name) in [
        ("photo_q90.jpg", "photo_q90_jpg"),
        ("photo_exif6.jpg", "photo_exif6_jpg"),
        ("photo_progressive.jpg", "photo_progressive_jpg"),
    ] {
        let ours = decode_file(name).to_rgb8();
        let theirs = reference_rgb(reference_name);
        assert_eq!(ours.dimensions(), theirs.dimensions(), "{name}: EXIF orientation applied as PIL's");
        let (max, mean) = diff(name, ours.as_raw(), theirs.as_raw());
        assert!(max <= JPEG_DECODER_MAX && mean <= JPEG_DECODER_MEAN, "{name}: max {max}, mean {mean}");
    }
    // Orientation 6 swaps the sides: the upright image is 45 wide, 61 tall.
    assert_eq!(decode_file("photo_exif6.jpg").to_rgb8().dimensions(), (45, 61));
}

#[test]
fn alpha_is_dropped_as_pils_convert_rgb() {
    let rgba = decode_file("rgba.png");
    assert!(rgba.color().has_alpha());
    assert_eq!(to_rgb(&rgba, 33, 27), reference_rgb("rgba_rgb"));
}

#[test]
fn base64_and_data_urls_decode() {
    let png = file("photo.png");
    let plain = STANDARD.encode(&png);
    let wrapped: String = STANDARD_NO_PAD
        .encode(&png)
        .as_bytes()
        .chunks(76)
        .map(|line| String::from_utf8_lossy(line) + "\r\n")
        .collect();
    for text in [
        plain.clone(),
        wrapped,
        format!("data:image/png;base64,{plain}"),
        format!("data:image/jpeg;base64,{plain}"), // the bytes decide, not the declared type
    ] {
        assert_eq!(decode_base64(&text).unwrap().to_rgb8(), photo());
    }
    let webp = STANDARD.encode(file("photo_lossless.webp"));
    assert_eq!(decode_base64(&format!("data:image/webp;base64,{webp}")).unwrap().to_rgb8(), photo());
}

#[test]
fn bad_input_gives_the_right_typed_error() {
    let plain = STANDARD.encode(file("photo.png"));
    let mut corrupt = plain.clone();
    corrupt.insert(100, '*');
    let error = decode_base64(&corrupt).unwrap_err();
    eprintln!("{error}");
    assert!(matches!(error, ImageError::NotBase64 { offset: 100, .. }), "{error}");
    let error = decode_base64(&format!("data:image/png;base64,{corrupt}")).unwrap_err();
    eprintln!("{error}");
    assert!(matches!(error, ImageError::NotBase64 { offset: 122, .. }), "{error}");

    assert_eq!(decode_base64(""), Err(ImageError::Empty));
    assert_eq!(decode_bytes(&[]), Err(ImageError::Empty));

    for (name, format) in [("photo.png", "PNG"), ("photo_q90.jpg", "JPEG"), ("photo_lossless.webp", "WebP")] {
        let bytes = file(name);
        let truncated = &bytes[..bytes.len() / 2];
        let error = decode_base64(&STANDARD.encode(truncated)).unwrap_err();
        eprintln!("{error}");
        assert!(
            matches!(&error, ImageError::Corrupt { format: f, .. } if *f == format),
            "{name} truncated: {error}"
        );
    }

    let mut rng = StdRng::seed_from_u64(6);
    let random: Vec<u8> = (0..4096).map(|_| rng.random()).collect();
    let error = decode_bytes(&random).unwrap_err();
    eprintln!("{error}");
    assert!(matches!(error, ImageError::UnknownFormat { .. }), "{error}");
    assert!(error.to_string().contains("JPEG, PNG, WebP"), "{error}");

    let error = decode_bytes(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap_err();

    eprintln!("{error}");
    assert_eq!(error, ImageError::UnsupportedFormat { format: "GIF".into() });

    let error = decode_bytes(&file("oversized.png")).unwrap_err();

    eprintln!("{error}");
    assert_eq!(error, ImageError::TooLarge { width: 9000, height: 9000, max: MAX_SIDE });
    assert_eq!(error.to_string(), "the image is 9000 x 9000 pixels; the largest accepted is 8192 x 8192");
    let error = decode_bytes(&file("huge_alloc.png")).unwrap_err();
    eprintln!("{error}");
    assert!(matches!(error, ImageError::TooMuchMemory { width: 8000, height: 8000, .. }), "{error}");

    // A JPEG whose frame header claims 9000 x 9000.
    let mut jpeg = file("photo_q90.jpg");
    let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).expect("baseline SOF0 marker");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x23, 0x28, 0x23, 0x28]);
    let error = decode_bytes(&jpeg).unwrap_err();
    eprintln!("{error}");
    assert_eq!(error, ImageError::TooLarge { width: 9000, height: 9000, max: MAX_SIDE });
}

#[test]
fn damaged_files_never_panic() {
    let mut rng = StdRng::seed_from_u64(66);
    for name in [
        "photo.png",
        "photo_q90.jpg",
        "photo_progressive.jpg",
        "photo_lossless.webp",
        "photo_lossy.webp",
        "rgba.png",
    ] {
        let original = file(name);
        for _ in 0..60 {
            let mut bytes = original.clone();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            bytes.truncate(rng.random_range(bytes.len() / 2..=bytes.len()));
            // Any outcome but a panic is fine: a damaged file may still decode.
            let _ = decode_bytes(&bytes);
        }
    }
}

#[test]
fn mask_luma_equals_pils_convert_l() {
    assert_eq!(luma(&photo()), reference_gray("photo_luma"));
    assert_eq!(to_mask(&DynamicImage::ImageRgb8(photo()), 61, 45), reference_gray("photo_luma"));
    assert_eq!(to_mask(&decode_file("rgba.png"), 33, 27), reference_gray("rgba_luma"));
    // A grayscale mask survives L -> RGB -> L unchanged (PIL's weights sum to 2^16).
    let gray = reference_rgb("gray_rgb");
    let gray_values: Vec<u8> = gray.pixels().map(|p| p.0[0]).collect();
    assert_eq!(to_mask(&decode_file("gray.png"), 23, 17).into_raw(), gray_values);
    // diffusers' mask processor: resize (in RGB), then convert("L").
    let theirs = reference_gray("photo_mask_down");
    assert_eq!(to_mask(&DynamicImage::ImageRgb8(photo()), theirs.width(), theirs.height()), theirs);
}

#[test]
fn lanczos_resize_equals_pils() {
    let source = DynamicImage::ImageRgb8(photo());
    for name in ["photo_down", "photo_up", "photo_mixed", "photo_swapped", "photo_tiny"] {
        let theirs = reference_rgb(name);
        let ours = to_rgb(&source, theirs.width(), theirs.height());
        assert_eq!(diff(name, ours.as_raw(), theirs.as_raw()).0, 0, "{name}");
    }
}

#[test]
fn lanczos_resize_equals_pils_for_random_sizes() {
    let bytes = file("reference.safetensors");
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let noise = DynamicImage::ImageRgb8(reference_rgb("noise"));
    let names: Vec<String> =
        tensors.names().into_iter().filter(|n| n.starts_with("noise_")).map(str::to_string).collect();
    assert_eq!(names.len(), 24, "{names:?}");
    for name in names {
        let theirs = reference_rgb(&name);
        let ours = to_rgb(&noise, theirs.width(), theirs.height());
        assert_eq!(ours, theirs, "{name}");
    }
}

#[test]
fn encode_round_trips() {
    let source = photo();
    let png = encode(&source, ImageEncoding::Png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    assert_eq!(decode_bytes(&png).unwrap().to_rgb8(), source);

    // Our quality-90 JPEG must lose no more than PIL's quality-90 JPEG of the same image does.
    let jpeg = encode(&source, ImageEncoding::Jpeg).unwrap();
    assert!(jpeg.starts_with(&[0xff, 0xd8, 0xff]));
    let ours = decode_bytes(&jpeg).unwrap().to_rgb8();
    let (_, our_mean) = diff("kiln JPEG q90 vs source", ours.as_raw(), source.as_raw());
    let (_, pil_mean) =
        diff("PIL JPEG q90 vs source", reference_rgb("photo_q90_jpg").as_raw(), source.as_raw());
    assert!(our_mean <= pil_mean * 1.1, "kiln JPEG error {our_mean} vs PIL's {pil_mean}");

    for encoding in [ImageEncoding::Png, ImageEncoding::Jpeg] {
        let text = encode_base64(&source, encoding).unwrap();
        assert_eq!(text.len() % 4, 0, "padded");
        assert_eq!(STANDARD.decode(&text).unwrap(), encode(&source, encoding).unwrap());
        assert_eq!(decode_base64(&text).unwrap().to_rgb8().dimensions(), (61, 45));
    }
    let error = encode(&RgbImage::new(0, 4), ImageEncoding::Jpeg).unwrap_err();
    eprintln!("{error}");
    assert!(matches!(error, ImageError::Encode { format: "JPEG", .. }), "{error}");
}

#[test]
fn vae_output_converts_without_copying() {
    let source = photo();
    let pixels = source.as_raw().clone();
    let address = pixels.as_ptr();
    let image = rgb_from_rgb8(Rgb8Image { width: 61, height: 45, pixels });
    assert_eq!(image.as_raw().as_ptr(), address, "the buffer moves, no copy");
    assert_eq!(image, source);
}

/// A random mask: a filled rectangle plus scattered single pixels.
fn random_mask(rng: &mut StdRng, width: u32, height: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        let in_block = (10..30).contains(&x) && (8..25).contains(&y);
        Luma([if in_block || rng.random_bool(0.1) {
            rng.random_range(128..=255)
        } else {
            rng.random_range(0..128)
        }])
    })
}

#[test]
fn fill_keeps_unmasked_pixels_and_fills_from_neighbours() {
    let mut rng = StdRng::seed_from_u64(7);
    let source = photo();
    let mask = random_mask(&mut rng, 61, 45);
    let filled = fill_masked(&source, &mask);
    let (mut lo, mut hi) = ([255u8; 3], [0u8; 3]);
    for (p, m) in source.pixels().zip(mask.pixels()) {
        if m.0[0] < 128 {
            for c in 0..3 {
                lo[c] = lo[c].min(p.0[c]);
                hi[c] = hi[c].max(p.0[c]);
            }
        }
    }
    for ((x, y, m), (p, q)) in mask.enumerate_pixels().zip(source.pixels().zip(filled.pixels())) {
        if m.0[0] < 128 {
            assert_eq!(p, q, "unmasked ({x}, {y}) changed");
        } else {
            // Averages of unmasked pixels: inside their per-channel range.
            assert!((0..3).all(|c| (lo[c]..=hi[c]).contains(&q.0[c])), "({x}, {y}) = {q:?}");
        }
    }
    // The hole's centre takes its colour from the nearby field, not from far away: fill the hole
    // of a left-red / right-blue image and compare sides.
    let halves =
        RgbImage::from_fn(64, 32, |x, _| if x < 32 { Rgb([220, 30, 40]) } else { Rgb([20, 40, 210]) });
    let hole = GrayImage::from_fn(64, 32, |x, y| {
        Luma([if (8..56).contains(&x) && (8..24).contains(&y) { 255 } else { 0 }])
    });
    let filled = fill_masked(&halves, &hole);
    assert!(filled.get_pixel(12, 16).0[0] > 150 && filled.get_pixel(51, 16).0[2] > 150);
}

#[test]
fn fill_of_a_hole_in_a_constant_field_is_that_constant() {
    let mut rng = StdRng::seed_from_u64(8);
    let colour = Rgb([rng.random(), rng.random(), rng.random()]);
    let mut image = RgbImage::from_pixel(50, 37, colour);
    let mask = random_mask(&mut rng, 50, 37);
    for (p, m) in image.pixels_mut().zip(mask.pixels()) {
        if m.0[0] >= 128 {
            *p = Rgb([rng.random(), rng.random(), rng.random()]); // garbage under the mask
        }
    }
    assert_eq!(fill_masked(&image, &mask), RgbImage::from_pixel(50, 37, colour));
}

#[test]
fn fill_of_an_all_masked_image_is_mid_grey() {
    let all = GrayImage::from_pixel(61, 45, Luma([255]));
    assert_eq!(fill_masked(&photo(), &all), RgbImage::from_pixel(61, 45, Rgb([128; 3])));
    assert_eq!(fill_masked(&photo(), &GrayImage::from_pixel(61, 45, Luma([0]))), photo());
}
