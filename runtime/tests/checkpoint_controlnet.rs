//! Opening ControlNets (`Checkpoint::open_controlnet`): the tiny ones of
//! `tools/make_controlnet_fixtures.py` as diffusers folders, as a single file in the original
//! ControlNet 1.1 layout (SD 1.5) and in diffusers' naming (SDXL), and what is refused.

use std::path::{Path, PathBuf};

use kiln_runtime::DType;
use kiln_runtime::checkpoint::{Checkpoint, CheckpointError, Family};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/controlnet").join(name)
}

/// Every canonical name with its shape, sorted.
fn layout(ckpt: &Checkpoint) -> Vec<(String, Vec<usize>)> {
    let mut names: Vec<(String, Vec<usize>)> =
        ckpt.names().map(|n| (n.to_string(), ckpt.shape(n).unwrap().to_vec())).collect();
    names.sort();
    names
}

#[test]
fn folders_and_single_files_hold_the_same_tensors() {
    for (name, family, zero_convs) in [("sd15_canny", Family::Sd15, 12), ("sdxl_canny", Family::SdxlBase, 9)]
    {
        let folder = Checkpoint::open_controlnet(fixture(name), None).unwrap();
        let file = fixture(&format!("{name}.safetensors"));
        let single = Checkpoint::open_controlnet(&file, Some(&fixture(name))).unwrap();
        assert_eq!(folder.family(), family, "{name}");
        assert_eq!(single.family(), family, "{name}");
        assert!(folder.is_reduced(), "{name}: the tiny ControlNets are reduced models");
        assert_eq!(layout(&folder), layout(&single), "{name}: folder and single file differ");
        assert_eq!(folder.unet_config(), single.unet_config(), "{name}");
        let l = layout(&folder);
        let count =
            |prefix: &str| l.iter().filter(|(n, _)| n.starts_with(prefix) && n.ends_with(".weight")).count();
        assert_eq!(count("unet.controlnet_down_blocks."), zero_convs, "{name}: zero convs");
        assert_eq!(count("unet.controlnet_cond_embedding.blocks."), 6, "{name}: hint blocks");
        assert!(
            l.iter().all(|(n, _)| !n.starts_with("unet.up_blocks.")),
            "{name}: a ControlNet has no up blocks"
        );
        // Same values too: a few tensors compared through the f32 reader.
        for n in [
            "unet.controlnet_cond_embedding.blocks.5.weight",
            "unet.controlnet_mid_block.bias",
            "unet.conv_in.weight",
        ] {
            let a = folder.tensor(n, DType::F32).unwrap().to_vec_f32().unwrap();
            let b = single.tensor(n, DType::F32).unwrap().to_vec_f32().unwrap();
            assert!(a == b, "{name}: {n} differs between the folder and the single file");
        }
    }
}

#[test]
fn the_config_without_config_json_comes_from_the_weights() {
    // The original-layout file alone: sizes from the weights (heads and norm groups take SD 1.5's
    // published values, which the tiny widths do not have, so only the shapes are compared).
    let single = Checkpoint::open_controlnet(fixture("sd15_canny.safetensors"), None).unwrap();
    let folder = Checkpoint::open_controlnet(fixture("sd15_canny"), None).unwrap();
    let (a, b) = (single.unet_config(), folder.unet_config());
    assert_eq!(a.block_out_channels, b.block_out_channels);
    assert_eq!(a.layers_per_block, b.layers_per_block);
    assert_eq!(a.down_block_types, b.down_block_types);
    assert_eq!(a.cross_attention_dim, b.cross_attention_dim);
    assert_eq!(a.use_linear_projection, b.use_linear_projection);
    let sdxl = Checkpoint::open_controlnet(fixture("sdxl_canny.safetensors"), None).unwrap();
    assert_eq!(sdxl.unet_config().addition_embed_type.as_deref(), Some("text_time"));
    assert_eq!(sdxl.unet_config().transformer_layers_per_block, vec![1, 1, 2]);
}

#[test]
fn a_model_that_is_not_a_controlnet_is_refused() {
    let unet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny/sd15.safetensors");
    match Checkpoint::open_controlnet(&unet, None) {
        Err(CheckpointError::UnknownLayout { reason, .. }) => {
            assert!(reason.contains("not a ControlNet"), "{reason}")
        }
        other => panic!("a whole checkpoint opened as a ControlNet: {other:?}"),
    }
    match Checkpoint::open_controlnet(fixture("missing.safetensors"), None) {
        Err(CheckpointError::NotFound { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_full_size_sdxl_canny_controlnet_opens_with_its_published_sizes() {
    use kiln_runtime::checkpoint::Component;
    use kiln_runtime::checkpoint::manifest::Manifest;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/manifests/controlnet_sdxl_canny.single_file.json");
    let manifest = Manifest::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = manifest.materialize(dir.path()).unwrap();
    // Without a config: everything from the weights and SDXL's published values.
    let ckpt = Checkpoint::open_controlnet(&file, None).unwrap();
    assert_eq!(ckpt.family(), Family::SdxlBase);
    assert!(!ckpt.is_reduced());
    assert_eq!(ckpt.parameters(Component::Unet), manifest.parameters["controlnet"]);
    let c = ckpt.unet_config();
    assert_eq!(c.transformer_layers_per_block, vec![1, 2, 10]);
    assert_eq!(c.num_attention_heads, vec![5, 10, 20]);
    assert_eq!(c.block_out_channels, vec![320, 640, 1280]);
    assert!(c.use_linear_projection);
    assert_eq!(c.projection_class_embeddings_input_dim, Some(2816));
    assert!(ckpt.unrecognised().is_empty(), "{:?}", ckpt.unrecognised());
    // With the published config.json beside it: the same sizes, checked against the weights.
    let with_config = Checkpoint::open_controlnet(&file, Some(dir.path())).unwrap();
    assert_eq!(with_config.unet_config().transformer_layers_per_block, c.transformer_layers_per_block);
    assert_eq!(with_config.unet_config().num_attention_heads, c.num_attention_heads);
}
