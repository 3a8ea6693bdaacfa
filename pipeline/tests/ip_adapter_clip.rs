//! The IP-Adapter's image side against transformers (`tools/make_ip_adapter_fixtures.py`):
//! CLIPImageProcessor's 224 x 224 crop of test images of several sizes and modes (transparency
//! included), bit for bit, and the tiny CLIP vision tower's `image_embeds`.

mod asset_common;

use asset_common::fixture;
use kiln_pipeline::image::clip::{clip_crop, clip_pixels};
use kiln_pipeline::models::clip::vision::ClipVisionModel;
use kiln_runtime::checkpoint::Checkpoint;
use kiln_runtime::{DType, Device, Tensor};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    image: String,
    processed: String,
    image_embeds: Vec<f32>,
}

fn cases() -> Vec<Case> {
    asset_common::read_cases("ip_adapter/clip_inputs.json")
}

fn open(name: &str) -> image::DynamicImage {
    image::open(fixture("ip_adapter").join(name)).unwrap()
}

#[test]
fn the_crop_equals_clip_image_processors() {
    let cases = cases();
    assert!(cases.len() >= 5);
    for case in &cases {
        let got = clip_crop(&open(&case.image), 224);
        let want = open(&case.processed).to_rgb8();
        let differ = got.as_raw().iter().zip(want.as_raw()).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{}: {differ} bytes differ from transformers' crop", case.image);
    }
}

#[test]
fn image_embeds_match_transformers() {
    let ckpt = Checkpoint::open_image_encoder(fixture("ip_adapter/image_encoder")).unwrap();
    let model = ClipVisionModel::load(&ckpt, DType::F32, Device::Cpu).unwrap();
    for case in cases() {
        let pixels = Tensor::from_f32(
            clip_pixels(&open(&case.image), 224),
            &[1, 224, 224, 3],
            DType::F32,
            Device::Cpu,
        )
        .unwrap();
        let got = model.image_embeds(&pixels).unwrap().to_vec_f32().unwrap();
        let want = &case.image_embeds;
        assert_eq!(got.len(), want.len());
        let err: f32 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt();
        let norm: f32 = want.iter().map(|b| b * b).sum::<f32>().sqrt();
        eprintln!("{}: relative L2 {:.2e}", case.image, err / norm);
        assert!(err / norm < 1e-5, "{}: relative L2 {} from transformers", case.image, err / norm);
    }
}

#[test]
fn a_folder_without_a_vision_tower_is_refused() {
    let err = Checkpoint::open_image_encoder(fixture("controlnet/sd15_canny.safetensors")).unwrap_err();
    assert!(err.to_string().contains("CLIP vision"), "{err}");
}
