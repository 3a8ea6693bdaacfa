//! Checkpoints that are valid safetensors but not a usable model: unknown layouts, missing
//! components, unsupported families, configs that do not parse or disagree with the weights,
//! broken shard indexes. Each gives its typed error naming the file or folder.

mod checkpoint_common;

use std::path::Path;

use checkpoint_common::{assert_names_file, copy_tiny, read_all, sparse, write_all};
use kiln_runtime::DType;
use kiln_runtime::checkpoint::{Checkpoint, CheckpointError as E, Component, Dtype, Family};

fn open_err(path: &Path) -> E {
    match Checkpoint::open(path) {
        Ok(c) => panic!("{} opened as {} {}", path.display(), c.format(), c.family()),
        Err(e) => e,
    }
}

/// The tiny SD 1.5 single file rewritten without the tensors `drop` selects, plus `extra`.
fn edited_sd15(
    dir: &Path,
    name: &str,
    drop: impl Fn(&str) -> bool,
    extra: &[(&str, Dtype, &[usize])],
) -> std::path::PathBuf {
    let mut tensors: Vec<_> =
        read_all(&checkpoint_common::tiny("sd15.safetensors")).into_iter().filter(|t| !drop(&t.0)).collect();
    for &(n, d, s) in extra {
        let len = s.iter().product::<usize>() * (d.bitsize() / 8);
        tensors.push((n.to_string(), d, s.to_vec(), vec![0u8; len]));
    }
    let path = dir.join(name);
    write_all(&path, &tensors);
    path
}

#[test]
fn unknown_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = sparse(
        dir.path(),
        "weird.safetensors",
        &[("foo.weight", Dtype::F32, &[4]), ("bar", Dtype::F16, &[2, 2])],
    );
    let e = open_err(&path);
    assert!(matches!(e, E::UnknownLayout { ref reason, .. } if reason.contains("`bar`")), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn a_diffusers_component_file_alone_gets_a_hint() {
    let path = checkpoint_common::tiny("sd15/unet/diffusion_pytorch_model.safetensors");
    let e = open_err(&path);
    assert!(matches!(e, E::UnknownLayout { ref reason, .. } if reason.contains("diffusers UNet")), "{e:?}");
    let path = checkpoint_common::tiny("sd15/vae/diffusion_pytorch_model.safetensors");
    assert!(
        matches!(open_err(&path), E::UnknownLayout { ref reason, .. } if reason.contains("diffusers VAE"))
    );
}

#[test]
fn a_folder_that_is_no_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hi").unwrap();
    let e = open_err(dir.path());
    assert!(matches!(e, E::UnknownLayout { .. }), "{e:?}");
    assert_names_file(&e, dir.path());
}

#[test]
fn a_component_folder_alone_gets_a_hint() {
    let path = checkpoint_common::tiny("sd15/unet");
    let e = open_err(&path);
    assert!(matches!(e, E::UnknownLayout { ref reason, .. } if reason.contains("component folder")), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn a_diffusers_folder_without_unet() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    std::fs::remove_dir_all(root.join("unet")).unwrap();
    let e = open_err(&root);
    assert!(matches!(e, E::MissingComponent { component: Component::Unet, .. }), "{e:?}");
    assert_names_file(&e, &root);
    assert!(e.to_string().contains("unet/"), "{e}");
}

#[test]
fn a_diffusers_folder_without_vae_opens_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    std::fs::remove_dir_all(root.join("vae")).unwrap();
    let c = Checkpoint::open(&root).unwrap();
    assert_eq!(c.missing_components(), [Component::Vae]);
    assert!(c.warnings().iter().any(|w| w.to_string().contains("model_index.json")), "{:?}", c.warnings());
    let e = c.require_complete().unwrap_err();
    assert!(
        matches!(e, E::MissingComponent { component: Component::Vae, family: Some(Family::Sd15), .. }),
        "{e:?}"
    );
    assert_names_file(&e, &root);
}

#[test]
fn a_single_file_without_vae_or_text_encoder_is_a_usable_unet() {
    let dir = tempfile::tempdir().unwrap();
    let path =
        edited_sd15(dir.path(), "unet_only.safetensors", |n| !n.starts_with("model.diffusion_model."), &[]);
    let c = Checkpoint::open(&path).unwrap();
    assert_eq!(c.family(), Family::Sd15);
    assert_eq!(c.missing_components(), [Component::Vae, Component::TextEncoder]);
    c.require(&[Component::Unet]).unwrap();
    let e = c.require_complete().unwrap_err();
    assert!(matches!(e, E::MissingComponent { component: Component::Vae, .. }), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn a_single_file_without_unet() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_sd15(dir.path(), "vae_only.safetensors", |n| !n.starts_with("first_stage_model."), &[]);
    let e = open_err(&path);
    assert!(matches!(e, E::MissingComponent { component: Component::Unet, family: None, .. }), "{e:?}");
    assert_names_file(&e, &path);
}

/// A sparse single file with an SD-shaped UNet grid of `levels` levels and 2 resnets per level.
fn unet_skeleton(
    dir: &Path,
    name: &str,
    width: usize,
    in_ch: usize,
    context: usize,
    levels: usize,
) -> std::path::PathBuf {
    let mut names: Vec<(String, Vec<usize>)> = vec![
        ("model.diffusion_model.input_blocks.0.0.weight".into(), vec![width, in_ch, 3, 3]),
        ("model.diffusion_model.input_blocks.1.0.in_layers.2.weight".into(), vec![width, width, 3, 3]),
        (
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight".into(),
            vec![width, context],
        ),
        ("model.diffusion_model.out.2.weight".into(), vec![4, width, 3, 3]),
    ];
    for l in 0..levels - 1 {
        names.push((
            format!("model.diffusion_model.input_blocks.{}.0.op.weight", 3 * (l + 1)),
            vec![width, width, 3, 3],
        ));
    }
    names.push((
        format!("model.diffusion_model.input_blocks.{}.0.in_layers.2.weight", 3 * levels - 1),
        vec![width, width, 3, 3],
    ));
    names.push((
        format!("model.diffusion_model.output_blocks.{}.0.in_layers.2.weight", 3 * levels - 1),
        vec![width, width, 3, 3],
    ));
    let specs: Vec<(&str, Dtype, &[usize])> =
        names.iter().map(|(n, s)| (n.as_str(), Dtype::F16, s.as_slice())).collect();
    sparse(dir, name, &specs)
}

#[test]
fn sd2_is_an_unsupported_family() {
    let dir = tempfile::tempdir().unwrap();
    let path = unet_skeleton(dir.path(), "sd21.safetensors", 320, 4, 1024, 4);
    let e = open_err(&path);
    assert!(
        matches!(e, E::UnsupportedFamily { ref found, .. } if found.contains("cross-attention dim 1024") && found.contains("SD 2.x")),
        "{e:?}"
    );
    assert_names_file(&e, &path);
    let path = unet_skeleton(dir.path(), "ip2p.safetensors", 320, 8, 768, 4);
    let e = open_err(&path);
    assert!(
        matches!(e, E::UnsupportedFamily { ref found, .. } if found.contains("8 input channels")),
        "{e:?}"
    );
}

#[test]
fn a_unet_grid_that_does_not_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = sparse(
        dir.path(),
        "half.safetensors",
        &[("model.diffusion_model.input_blocks.0.0.weight", Dtype::F16, &[320, 4, 3, 3])],
    );
    let e = open_err(&path);
    assert!(matches!(e, E::UnetStructure { .. }), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn a_vae_attention_weight_of_the_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let key = "first_stage_model.decoder.mid.attn_1.q.weight";
    let path =
        edited_sd15(dir.path(), "bad_q.safetensors", |n| n == key, &[(key, Dtype::F16, &[16, 16, 3, 3])]);
    let e = open_err(&path);
    assert!(matches!(e, E::BadShape { ref tensor, .. } if tensor == key), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn two_stored_tensors_for_one_canonical_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_sd15(
        dir.path(),
        "dup.safetensors",
        |_| false,
        &[("cond_stage_model.transformer.final_layer_norm.weight", Dtype::F16, &[32])],
    );
    let e = open_err(&path);
    assert!(
        matches!(e, E::DuplicateTensor { ref canonical, .. } if canonical == "text_encoder.text_model.final_layer_norm.weight"),
        "{e:?}"
    );
    assert_names_file(&e, &path);
}

#[test]
fn config_json_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    let config = root.join("unet/config.json");
    std::fs::write(&config, "{\"block_out_channels\": [16, 16,").unwrap();
    let e = open_err(&root);
    assert!(matches!(e, E::Config { .. }), "{e:?}");
    assert_names_file(&e, &config);
    std::fs::write(&config, r#"{"block_out_channels": [16, 16, 32, 32], "layers_per_block": "two"}"#)
        .unwrap();
    let e = open_err(&root);
    assert!(matches!(e, E::Config { ref reason, .. } if reason.contains("layers_per_block")), "{e:?}");
    assert_names_file(&e, &config);
}

#[test]
fn model_index_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sdxl", dir.path());
    let index = root.join("model_index.json");
    std::fs::write(&index, "not json").unwrap();
    let e = open_err(&root);
    assert!(matches!(e, E::Config { .. }), "{e:?}");
    assert_names_file(&e, &index);
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(v.as_object_mut().unwrap());
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn configs_that_disagree_with_the_weights() {
    let cases: [(&str, &str, serde_json::Value, &str); 8] = [
        ("unet/config.json", "cross_attention_dim", 64.into(), "cross_attention_dim"),
        ("unet/config.json", "layers_per_block", 3.into(), "layers_per_block"),
        (
            "unet/config.json",
            "transformer_layers_per_block",
            serde_json::json!([1, 1, 3]),
            "transformer_layers_per_block[2]",
        ),
        ("unet/config.json", "attention_head_dim", serde_json::json!([1, 2, 3]), "num_attention_heads[2]"),
        (
            "unet/config.json",
            "reverse_transformer_layers_per_block",
            serde_json::json!([[2, 2, 3], [1, 1, 1], [1, 1, 1]]),
            "reverse_transformer_layers_per_block[0] (transformer blocks per attention)",
        ),
        (
            "unet/config.json",
            "mid_block_type",
            "UNetMidBlock2D".into(),
            "mid_block_type (attention in the mid block)",
        ),
        ("vae/config.json", "latent_channels", 16.into(), "latent_channels"),
        ("text_encoder_2/config.json", "num_hidden_layers", 12.into(), "num_hidden_layers"),
    ];
    for (file, key, value, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = copy_tiny("sdxl", dir.path());
        let config = root.join(file);
        edit_json(&config, |o| {
            o.insert(key.into(), value);
        });
        let e = open_err(&root);
        assert!(matches!(e, E::ConfigMismatch { field: ref f, .. } if f == field), "{file} {key}: {e:?}");
        assert_names_file(&e, &config);
    }
}

#[test]
fn a_missing_config_json_is_a_warning_and_the_weights_decide() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    std::fs::remove_file(root.join("vae/config.json")).unwrap();
    let c = Checkpoint::open(&root).unwrap();
    assert_eq!(c.vae_config().unwrap().block_out_channels, [8, 8, 16, 16]);
    assert!(c.warnings().iter().any(|w| w.to_string().contains("vae/config.json")), "{:?}", c.warnings());
}

#[test]
fn component_folder_without_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    std::fs::remove_file(root.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(root.join("vae/diffusion_pytorch_model.bin"), b"PK").unwrap();
    let e = open_err(&root);
    assert!(
        matches!(e, E::NoWeights { ref found, .. } if found == &["diffusion_pytorch_model.bin"]),
        "{e:?}"
    );
    assert_names_file(&e, &root.join("vae"));
}

/// Splits the tiny SD 1.5 UNet into two shards with an index; returns the unet folder.
fn shard_unet(root: &Path) -> std::path::PathBuf {
    let unet = root.join("unet");
    let plain = unet.join("diffusion_pytorch_model.safetensors");
    let tensors = read_all(&plain);
    std::fs::remove_file(&plain).unwrap();
    let (a, b) = tensors.split_at(tensors.len() / 2);
    let shards = [
        "diffusion_pytorch_model-00001-of-00002.safetensors",
        "diffusion_pytorch_model-00002-of-00002.safetensors",
    ];
    write_all(&unet.join(shards[0]), a);
    write_all(&unet.join(shards[1]), b);
    let mut map = serde_json::Map::new();
    for (part, shard) in [(a, shards[0]), (b, shards[1])] {
        for t in part {
            map.insert(t.0.clone(), shard.into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(unet.join("diffusion_pytorch_model.safetensors.index.json"), index.to_string()).unwrap();
    unet
}

#[test]
fn sharded_weights_read_like_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    shard_unet(&root);
    let sharded = Checkpoint::open(&root).unwrap();
    let plain = Checkpoint::open(checkpoint_common::tiny("sd15")).unwrap();
    assert_eq!(sharded.names().collect::<Vec<_>>(), plain.names().collect::<Vec<_>>());
    assert_eq!(sharded.component(Component::Unet).unwrap().files.len(), 2);
    let name = "unet.up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_v.weight";
    assert_eq!(
        sharded.tensor(name, DType::F32).unwrap().to_vec_f32().unwrap(),
        plain.tensor(name, DType::F32).unwrap().to_vec_f32().unwrap()
    );
}

#[test]
fn shard_index_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    let unet = shard_unet(&root);
    let index = unet.join("diffusion_pytorch_model.safetensors.index.json");
    // A shard that is not there.
    std::fs::remove_file(unet.join("diffusion_pytorch_model-00002-of-00002.safetensors")).unwrap();
    let e = open_err(&root);
    assert!(
        matches!(e, E::ShardIndex { ref reason, .. } if reason.contains("00002-of-00002") && reason.contains("missing")),
        "{e:?}"
    );
    assert_names_file(&e, &index);
    // A tensor the index places in a shard that does not hold it.
    edit_json(&index, |o| {
        let map = o.get_mut("weight_map").unwrap().as_object_mut().unwrap();
        map.retain(|_, v| v != "diffusion_pytorch_model-00002-of-00002.safetensors");
        map.insert("conv_out.bogus".into(), "diffusion_pytorch_model-00001-of-00002.safetensors".into());
    });
    let e = open_err(&root);
    assert!(matches!(e, E::ShardIndex { ref reason, .. } if reason.contains("conv_out.bogus")), "{e:?}");
    // An index that is not JSON.
    std::fs::write(&index, "{").unwrap();
    let e = open_err(&root);
    assert!(matches!(e, E::Config { .. }), "{e:?}");
    assert_names_file(&e, &index);
}
