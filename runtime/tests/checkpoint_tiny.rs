//! The tiny random-weight fixtures (`fixtures/tiny/`, made by `tools/make_tiny_models.py`): each
//! model in both layouts. Detection, configs, and above all that every canonical tensor has the
//! same shape and the same values from the single file as from the diffusers folder — which
//! checks the Reshape (VAE attention), Rows (OpenCLIP q/k/v) and Transpose (OpenCLIP
//! projection) transforms on real data.

mod checkpoint_common;

use checkpoint_common::tiny;
use kiln_runtime::DType;
use kiln_runtime::checkpoint::{
    Checkpoint, Component, ConfigSource, Family, Format, OpenOptions, Transform, Warning,
};

fn open(rel: &str) -> Checkpoint {
    Checkpoint::open(tiny(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn formats_and_families() {
    for (rel, format, family) in [
        ("sd15", Format::Diffusers, Family::Sd15),
        ("sd15.safetensors", Format::SingleFile, Family::Sd15),
        ("sdxl", Format::Diffusers, Family::SdxlBase),
        ("sdxl.safetensors", Format::SingleFile, Family::SdxlBase),
        ("sdxl/model_index.json", Format::Diffusers, Family::SdxlBase),
    ] {
        let c = open(rel);
        assert_eq!((c.format(), c.family()), (format, family), "{rel}");
        assert!(c.is_reduced(), "{rel}");
        assert!(c.missing_components().is_empty(), "{rel}: {:?}", c.missing_components());
        c.require_complete().unwrap();
        assert!(c.unrecognised().is_empty(), "{rel}: {:?}", c.unrecognised());
    }
}

#[test]
fn both_layouts_give_the_same_canonical_tensors_shapes_and_values() {
    for model in ["sd15", "sdxl"] {
        let folder = open(model);
        let single = open(&format!("{model}.safetensors"));
        let a: Vec<&str> = folder.names().collect();
        let b: Vec<&str> = single.names().collect();
        assert_eq!(a, b, "{model}: canonical names differ");
        for name in a {
            assert_eq!(folder.shape(name), single.shape(name), "{model}: {name}");
            // The weights are stored as F16 in both layouts: reading them as F16 must agree
            // bit for bit, whatever transform the single file needs.
            let x = folder.tensor(name, DType::F16).unwrap().to_vec_f32().unwrap();
            let y = single.tensor(name, DType::F16).unwrap().to_vec_f32().unwrap();
            assert!(
                x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{model}: {name} values differ"
            );
            assert_eq!(x.len(), y.len());
        }
        for c in Component::ALL {
            assert_eq!(folder.parameters(c), single.parameters(c), "{model}: {c} parameters");
        }
    }
}

#[test]
fn every_transform_is_exercised_by_the_sdxl_single_file() {
    let single = open("sdxl.safetensors");
    let count = |f: &dyn Fn(Transform) -> bool| {
        single.names().filter(|n| f(single.view(n).unwrap().transform)).count()
    };
    // 4 VAE attention linears x encoder/decoder; 2 fused tensors x 3 parts x 4 OpenCLIP layers;
    // one projection.
    assert_eq!(count(&|t| t == Transform::Reshape), 8);
    assert_eq!(count(&|t| matches!(t, Transform::Rows { of: 3, .. })), 24);
    assert_eq!(count(&|t| t == Transform::Transpose), 1);
    let v = single.view("text_encoder_2.text_model.encoder.layers.0.self_attn.v_proj.weight").unwrap();
    assert_eq!(v.source.name(), "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight");
    assert_eq!((v.transform, v.shape), (Transform::Rows { index: 2, of: 3 }, &[32, 32][..]));
    // Rows are zero-copy: the bytes are the last third of the stored tensor.
    let bytes = v.bytes().unwrap().unwrap();
    assert_eq!(bytes.as_ptr(), v.source.data()[2 * v.source.data().len() / 3..].as_ptr());
    assert!(single.view("text_encoder_2.text_projection.weight").unwrap().bytes().unwrap().is_none());
}

#[test]
fn parameter_counts_add_up() {
    for rel in ["sd15", "sdxl.safetensors"] {
        let c = open(rel);
        for info in c.components() {
            let sum: u64 = c
                .names()
                .filter(|n| n.starts_with(&format!("{}.", info.component)))
                .map(|n| c.shape(n).unwrap().iter().product::<usize>() as u64)
                .sum();
            assert_eq!(info.parameters, sum, "{rel}: {}", info.component);
            assert_eq!(info.dtypes.get("F16"), Some(&info.tensors), "{rel}: {}", info.component);
        }
    }
}

#[test]
fn ignored_tensors_are_listed_with_reasons() {
    let sd15 = open("sd15.safetensors");
    let names: Vec<&str> = sd15.ignored().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), 15, "{names:?}");
    for n in [
        "alphas_cumprod",
        "betas",
        "model_ema.decay",
        "model_ema.num_updates",
        "cond_stage_model.transformer.text_model.embeddings.position_ids",
    ] {
        assert!(names.contains(&n), "{n} not ignored: {names:?}");
    }
    let sdxl = open("sdxl.safetensors");
    let names: Vec<&str> = sdxl.ignored().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
            "conditioner.embedders.1.model.logit_scale"
        ]
    );
    let folder = open("sd15");
    assert_eq!(folder.ignored().len(), 1);
    assert_eq!(folder.ignored()[0].name, "text_model.embeddings.position_ids");
}

#[test]
fn diffusers_configs_are_honoured() {
    let c = open("sdxl");
    let u = c.unet_config();
    assert_eq!(u.block_out_channels, [16, 32, 32]);
    assert_eq!(u.num_attention_heads, [1, 2, 2]);
    assert_eq!(u.transformer_layers_per_block, [1, 1, 2]);
    assert_eq!((u.cross_attention_dim, u.norm_num_groups, u.addition_time_embed_dim), (48, 8, Some(8)));
    assert_eq!(u.projection_class_embeddings_input_dim, Some(80));
    assert!(u.use_linear_projection);
    let v = c.vae_config().unwrap();
    assert_eq!(
        (v.scaling_factor, v.norm_num_groups, v.block_out_channels.as_slice()),
        (0.13025, 4, &[8, 8, 16, 16][..])
    );
    let t2 = c.text_encoder_config(Component::TextEncoder2).unwrap();
    assert_eq!(
        (t2.hidden_size, t2.num_attention_heads, t2.hidden_act.as_str(), t2.projection_dim),
        (32, 2, "gelu", Some(32))
    );
    let t1 = c.text_encoder_config(Component::TextEncoder).unwrap();
    assert_eq!((t1.hidden_size, t1.hidden_act.as_str(), t1.projection_dim), (16, "quick_gelu", None));
    for info in c.components() {
        assert!(matches!(info.config_source, ConfigSource::ConfigJson(_)), "{}", info.component);
    }
}

#[test]
fn single_file_sizes_from_the_weights_match_the_configs() {
    for model in ["sd15", "sdxl"] {
        let folder = open(model);
        let single = open(&format!("{model}.safetensors"));
        let (a, b) = (folder.unet_config(), single.unet_config());
        assert_eq!(a.block_out_channels, b.block_out_channels, "{model}");
        assert_eq!(a.layers_per_block, b.layers_per_block, "{model}");
        assert_eq!(a.down_block_types, b.down_block_types, "{model}");
        assert_eq!(a.up_block_types, b.up_block_types, "{model}");
        assert_eq!(a.mid_transformer_layers(), b.mid_transformer_layers(), "{model}");
        for l in 0..a.levels() {
            if a.down_has_attention(l) {
                assert_eq!(
                    a.transformer_layers_per_block[l], b.transformer_layers_per_block[l],
                    "{model} level {l}"
                );
            }
        }
        assert_eq!(
            (a.in_channels, a.out_channels, a.cross_attention_dim, a.use_linear_projection),
            (b.in_channels, b.out_channels, b.cross_attention_dim, b.use_linear_projection),
            "{model}"
        );
        assert_eq!(
            a.projection_class_embeddings_input_dim, b.projection_class_embeddings_input_dim,
            "{model}"
        );
        let (a, b) = (folder.vae_config().unwrap(), single.vae_config().unwrap());
        assert_eq!(
            (&a.block_out_channels, a.layers_per_block, a.latent_channels, a.scaling_factor),
            (&b.block_out_channels, b.layers_per_block, b.latent_channels, b.scaling_factor),
            "{model}"
        );
        for c in [Component::TextEncoder, Component::TextEncoder2] {
            let (Some(a), Some(b)) = (folder.text_encoder_config(c), single.text_encoder_config(c)) else {
                continue;
            };
            assert_eq!(
                (
                    a.hidden_size,
                    a.num_hidden_layers,
                    a.intermediate_size,
                    a.vocab_size,
                    a.max_position_embeddings
                ),
                (
                    b.hidden_size,
                    b.num_hidden_layers,
                    b.intermediate_size,
                    b.vocab_size,
                    b.max_position_embeddings
                ),
                "{model} {c}"
            );
            assert_eq!((&a.hidden_act, a.projection_dim), (&b.hidden_act, b.projection_dim), "{model} {c}");
        }
        // What the weights cannot tell is flagged for a reduced model.
        assert!(
            single.warnings().iter().any(|w| matches!(w, Warning::ReducedModelDefaults { .. })),
            "{model}"
        );
    }
}

#[test]
fn a_config_folder_makes_the_single_file_configs_exact() {
    for model in ["sd15", "sdxl"] {
        let folder = open(model);
        let options = OpenOptions::default().config_dir(tiny(model));
        let single = Checkpoint::open_with(tiny(&format!("{model}.safetensors")), &options).unwrap();
        for c in Component::ALL {
            let (Some(a), Some(b)) = (folder.component(c), single.component(c)) else { continue };
            assert_eq!(a.config, b.config, "{model} {c}");
            assert!(matches!(b.config_source, ConfigSource::ConfigJson(_)));
        }
        assert!(single.warnings().is_empty(), "{:?}", single.warnings());
    }
}

#[test]
fn values_survive_every_compute_dtype() {
    let single = open("sdxl.safetensors");
    let name = "text_encoder_2.text_projection.weight";
    let f32s = single.tensor(name, DType::F32).unwrap();
    assert_eq!(f32s.dims(), [32, 32]);
    let stored = single.view(name).unwrap().source.to_f32_vec().unwrap();
    let t = f32s.to_vec_f32().unwrap();
    // Transposed: canonical [i, j] is stored [j, i].
    for i in 0..32 {
        for j in 0..32 {
            assert_eq!(t[i * 32 + j], stored[j * 32 + i]);
        }
    }
    let bf16 = single.tensor(name, DType::BF16).unwrap();
    assert_eq!(bf16.dtype(), DType::BF16);
    let err = single.tensor("unet.no_such.weight", DType::F32).unwrap_err();
    assert!(
        err.to_string().contains("unet.no_such.weight") && err.to_string().contains("sdxl.safetensors"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Checkpoint>();
    let c = open("sd15.safetensors");
    let names: Vec<&str> = c.names().collect();
    std::thread::scope(|s| {
        for part in names.chunks(names.len() / 2 + 1) {
            let c = &c;
            s.spawn(move || {
                for n in part {
                    c.tensor(n, DType::F32).unwrap();
                }
            });
        }
    });
}
