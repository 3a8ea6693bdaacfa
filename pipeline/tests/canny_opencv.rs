//! kiln's Canny edges against OpenCV's: `cv2.Canny(rgb, 100, 200)` of the test images made by
//! `tools/make_controlnet_fixtures.py` (smooth waves with hard blocks, pure noise, blurred
//! noise, thin lines, an odd size, a flat image), pixel for pixel.

use std::path::Path;

use kiln_pipeline::image::canny::{canny, canny_rgb};
use serde::Deserialize;

const FOLDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/controlnet/canny");

#[derive(Deserialize)]
struct Case {
    image: String,
    canny: String,
    edge_pixels: usize,
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[test]
fn canny_equals_opencv_pixel_for_pixel() {
    let cases: Cases =
        serde_json::from_str(&std::fs::read_to_string(Path::new(FOLDER).join("cases.json")).unwrap())
            .unwrap();
    assert!(cases.cases.len() >= 5);
    for case in cases.cases {
        let image = image::open(Path::new(FOLDER).join(&case.image)).unwrap().to_rgb8();
        let want = image::open(Path::new(FOLDER).join(&case.canny)).unwrap().to_luma8();
        let got = canny(&image, 100.0, 200.0);
        assert_eq!(got.dimensions(), want.dimensions(), "{}", case.image);
        let differ = got.as_raw().iter().zip(want.as_raw()).filter(|(a, b)| a != b).count();
        let edges = got.as_raw().iter().filter(|&&v| v == 255).count();
        assert_eq!(
            differ, 0,
            "{}: {differ} pixels differ from OpenCV ({edges} edges, OpenCV {})",
            case.image, case.edge_pixels
        );
        assert_eq!(edges, case.edge_pixels, "{}", case.image);
        // The control image: the map in every channel.
        let rgb = canny_rgb(&image, 100.0, 200.0);
        assert!(rgb.pixels().zip(got.pixels()).all(|(c, g)| c.0 == [g[0]; 3]), "{}", case.image);
    }
}

#[test]
fn swapped_thresholds_and_empty_images_are_handled() {
    let image = image::open(Path::new(FOLDER).join("waves.png")).unwrap().to_rgb8();
    assert!(canny(&image, 200.0, 100.0) == canny(&image, 100.0, 200.0), "OpenCV swaps low > high");
    assert_eq!(canny(&image::RgbImage::new(0, 0), 100.0, 200.0).dimensions(), (0, 0));
}
