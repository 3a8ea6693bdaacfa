//! Opening CLIP vision towers (`Checkpoint::open_image_encoder`): the tiny one of
//! `tools/make_ip_adapter_fixtures.py` and the full-size ViT-H/14 of the key manifest.

use std::path::Path;

use kiln_runtime::checkpoint::manifest::Manifest;
use kiln_runtime::checkpoint::{Checkpoint, Component};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn the_tiny_encoder_opens_with_its_config() {
    let ckpt = Checkpoint::open_image_encoder(repo("fixtures/ip_adapter/image_encoder")).unwrap();
    let c = ckpt.image_encoder_config().unwrap();
    assert_eq!((c.hidden_size, c.num_hidden_layers, c.num_attention_heads), (32, 3, 4));
    assert_eq!((c.image_size, c.patch_size, c.projection_dim, c.hidden_act.as_str()), (224, 14, 24, "gelu"));
    assert!(ckpt.unrecognised().is_empty(), "{:?}", ckpt.unrecognised());
}

#[test]
fn the_full_size_vit_h_opens_from_its_weights_and_its_config() {
    let manifest = Manifest::read(&repo("fixtures/manifests/image_encoder_vit_h.single_file.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = manifest.materialize(dir.path()).unwrap();
    // The file alone: sizes from the weights, 16 heads and exact GELU.
    let alone = Checkpoint::open_image_encoder(&file).unwrap();
    let c = alone.image_encoder_config().unwrap();
    assert_eq!((c.hidden_size, c.intermediate_size, c.num_hidden_layers), (1280, 5120, 32));
    assert_eq!((c.num_attention_heads, c.projection_dim, c.image_size, c.patch_size), (16, 1024, 224, 14));
    assert_eq!(alone.parameters(Component::ImageEncoder), manifest.parameters["image_encoder"]);
    // The folder with config.json: the same sizes, checked against the weights.
    let folder = Checkpoint::open_image_encoder(dir.path()).unwrap();
    assert_eq!(folder.image_encoder_config(), alone.image_encoder_config());
}

#[test]
fn a_file_without_a_vision_tower_is_refused() {
    let err = Checkpoint::open_image_encoder(repo("fixtures/controlnet/sdxl_canny.safetensors")).unwrap_err();
    assert!(err.to_string().contains("CLIP vision"), "{err}");
}
