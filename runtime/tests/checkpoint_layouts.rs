//! Variations of the diffusers layout met in the wild: fp16 variant files, folders without
//! model_index.json, transformers 5 CLIP names, pre-0.14 diffusers VAE attention names, and
//! unknown extra tensors (listed, not an error).

mod checkpoint_common;

use std::path::Path;

use checkpoint_common::{copy_tiny, read_all, write_all};
use kiln_runtime::DType;
use kiln_runtime::checkpoint::{Checkpoint, Component, OpenOptions, Warning};

fn reference() -> Checkpoint {
    Checkpoint::open(checkpoint_common::tiny("sd15")).unwrap()
}

/// Asserts `c` has exactly the reference's canonical tensors with the same values.
fn assert_same_as_reference(c: &Checkpoint) {
    let r = reference();
    assert_eq!(c.names().collect::<Vec<_>>(), r.names().collect::<Vec<_>>());
    for name in r.names() {
        assert_eq!(
            c.tensor(name, DType::F32).unwrap().to_vec_f32().unwrap(),
            r.tensor(name, DType::F32).unwrap().to_vec_f32().unwrap(),
            "{name}"
        );
    }
}

/// Rewrites a safetensors file, renaming each tensor by `rename`.
fn rename_tensors(path: &Path, rename: impl Fn(&str) -> String) {
    let tensors: Vec<_> = read_all(path).into_iter().map(|(n, d, s, b)| (rename(&n), d, s, b)).collect();
    write_all(path, &tensors);
}

#[test]
fn fp16_variant_files_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    for (c, stem) in
        [("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")]
    {
        let d = root.join(c);
        std::fs::rename(d.join(format!("{stem}.safetensors")), d.join(format!("{stem}.fp16.safetensors")))
            .unwrap();
    }
    let c = Checkpoint::open(&root).unwrap();
    assert_same_as_reference(&c);
    assert!(
        c.component(Component::Unet).unwrap().files[0]
            .ends_with("unet/diffusion_pytorch_model.fp16.safetensors")
    );
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn with_both_precisions_the_plain_files_win_unless_a_variant_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    let unet = root.join("unet");
    std::fs::copy(
        unet.join("diffusion_pytorch_model.safetensors"),
        unet.join("diffusion_pytorch_model.fp16.safetensors"),
    )
    .unwrap();
    let c = Checkpoint::open(&root).unwrap();
    assert!(
        c.component(Component::Unet).unwrap().files[0].ends_with("unet/diffusion_pytorch_model.safetensors")
    );
    assert!(
        matches!(c.warnings(), [Warning::SeveralWeightFiles { component: Component::Unet, .. }]),
        "{:?}",
        c.warnings()
    );
    let c = Checkpoint::open_with(&root, &OpenOptions::default().variant("fp16")).unwrap();
    assert!(
        c.component(Component::Unet).unwrap().files[0]
            .ends_with("unet/diffusion_pytorch_model.fp16.safetensors")
    );
}

#[test]
fn a_folder_without_model_index_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    std::fs::remove_file(root.join("model_index.json")).unwrap();
    assert_same_as_reference(&Checkpoint::open(&root).unwrap());
}

#[test]
fn transformers_5_clip_names_without_text_model() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    rename_tensors(&root.join("text_encoder/model.safetensors"), |n| {
        n.strip_prefix("text_model.").unwrap_or(n).to_string()
    });
    let c = Checkpoint::open(&root).unwrap();
    assert_same_as_reference(&c);
    assert_eq!(c.ignored()[0].name, "embeddings.position_ids");
}

#[test]
fn legacy_diffusers_vae_attention_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    rename_tensors(&root.join("vae/diffusion_pytorch_model.safetensors"), |n| {
        n.replace(".to_q.", ".query.")
            .replace(".to_k.", ".key.")
            .replace(".to_v.", ".value.")
            .replace(".to_out.0.", ".proj_attn.")
    });
    assert_same_as_reference(&Checkpoint::open(&root).unwrap());
}

#[test]
fn unknown_extra_tensors_are_listed_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_tiny("sd15", dir.path());
    let path = root.join("unet/diffusion_pytorch_model.safetensors");
    let mut tensors = read_all(&path);
    tensors.push((
        "down_blocks.0.attentions.0.lora_up.weight".into(),
        kiln_runtime::checkpoint::Dtype::F16,
        vec![2],
        vec![0; 4],
    ));
    write_all(&path, &tensors);
    let c = Checkpoint::open(&root).unwrap();
    let u: Vec<&str> = c.unrecognised().iter().map(|u| u.name.as_str()).collect();
    assert_eq!(u, ["down_blocks.0.attentions.0.lora_up.weight"]);
    assert_eq!(c.unrecognised()[0].file, path);
    assert_same_as_reference(&c);
}

#[test]
fn single_file_with_old_clip_names_and_extra_keys() {
    // Some SD 1.x files store CLIP without `text_model.`; unknown keys are listed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    let mut tensors: Vec<_> = read_all(&checkpoint_common::tiny("sd15.safetensors"))
        .into_iter()
        .map(|(n, d, s, b)| {
            (n.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."), d, s, b)
        })
        .collect();
    tensors.push((
        "cond_stage_model.transformer.vision_model.post_layernorm.weight".into(),
        kiln_runtime::checkpoint::Dtype::F16,
        vec![2],
        vec![0; 4],
    ));
    write_all(&path, &tensors);
    let c = Checkpoint::open(&path).unwrap();
    let single = Checkpoint::open(checkpoint_common::tiny("sd15.safetensors")).unwrap();
    assert_eq!(c.names().collect::<Vec<_>>(), single.names().collect::<Vec<_>>());
    assert_eq!(c.unrecognised().len(), 1);
}
