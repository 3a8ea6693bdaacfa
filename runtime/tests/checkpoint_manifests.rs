//! The full-size key manifests of the real checkpoints (`fixtures/manifests/`, written by
//! `tools/make_key_manifests.py` from diffusers' own models and conversions): every stored
//! tensor of every real layout maps to a canonical name or to the ignored list; the two layouts
//! of each family map to the same canonical names with the same shapes — which pins the
//! canonical name of every single-file tensor to the name diffusers gives it; family detection
//! and parameter counts. Then each manifest is rebuilt as a full-size checkpoint whose data is a
//! sparse hole (instant, no disk) and opened for real.

mod checkpoint_common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_runtime::checkpoint::family::{Shapes, detect};
use kiln_runtime::checkpoint::manifest::Manifest;
use kiln_runtime::checkpoint::names::{self, KeyKind, Transform};
use kiln_runtime::checkpoint::{Checkpoint, Component, ConfigSource, Family, Format};

const FAMILIES: [&str; 6] = ["sd15", "sd15_inpaint", "sdxl_base", "sdxl_refiner", "sdxl_inpaint", "ssd_1b"];

fn manifest_path(family: &str, format: &str) -> PathBuf {
    checkpoint_common::repo().join(format!("fixtures/manifests/{family}.{format}.json"))
}

fn manifest(family: &str, format: &str) -> Manifest {
    Manifest::read(&manifest_path(family, format)).unwrap()
}

/// The canonical names and shapes of a manifest through the naming tables, with the transforms
/// used and the ignored names. Panics listing every unrecognised tensor.
struct Mapped {
    shapes: Shapes,
    transforms: BTreeMap<String, (String, Transform)>,
    ignored: Vec<String>,
}

fn map_manifest(m: &Manifest) -> Mapped {
    let single = m.format == "single_file";
    let structure = if single {
        names::scan_single_file(m.tensors().map(|(_, t)| t.name.as_str())).unwrap()
    } else {
        Default::default()
    };
    let mut out = Mapped { shapes: Shapes::new(), transforms: BTreeMap::new(), ignored: Vec::new() };
    let mut unrecognised = Vec::new();
    for (file, t) in m.tensors() {
        let kind = if single {
            names::single_file_key(&t.name, &structure)
        } else {
            let folder = file.split('/').next().unwrap();
            let component = Component::ALL.into_iter().find(|c| c.prefix() == folder).unwrap();
            names::diffusers_key(component, &t.name)
        };
        match kind {
            KeyKind::Mapped(targets) => {
                for target in targets {
                    let shape = target.transform.canonical_shape(&t.shape).unwrap();
                    assert!(
                        out.shapes.insert(target.name.clone(), shape).is_none(),
                        "duplicate {}",
                        target.name
                    );
                    out.transforms.insert(target.name, (t.name.clone(), target.transform));
                }
            }
            KeyKind::Ignored(_) => out.ignored.push(t.name.clone()),
            KeyKind::Unrecognised => unrecognised.push(format!("{file}: {}", t.name)),
        }
    }
    assert!(
        unrecognised.is_empty(),
        "{} {}: unrecognised tensors:\n{}",
        m.family,
        m.format,
        unrecognised.join("\n")
    );
    out
}

#[test]
fn every_tensor_of_every_manifest_is_named_or_ignored() {
    for family in FAMILIES {
        for format in ["single_file", "diffusers"] {
            let m = manifest(family, format);
            assert_eq!((m.family.as_str(), m.format.as_str()), (family, format));
            let mapped = map_manifest(&m);
            assert!(mapped.shapes.keys().all(|n| names::is_canonical(n)));
            // Diffusers names are canonical as stored, under their component's prefix.
            if format == "diffusers" {
                for (name, (stored, transform)) in &mapped.transforms {
                    assert_eq!(*transform, Transform::Identity, "{name}");
                    assert!(name.ends_with(stored.as_str()), "{name} <- {stored}");
                }
            }
        }
    }
}

#[test]
fn both_layouts_of_each_family_give_the_same_canonical_tensors_and_shapes() {
    for family in FAMILIES {
        let single = map_manifest(&manifest(family, "single_file"));
        let diffusers = map_manifest(&manifest(family, "diffusers"));
        let only_single: Vec<_> =
            single.shapes.keys().filter(|k| !diffusers.shapes.contains_key(*k)).collect();
        let only_diffusers: Vec<_> =
            diffusers.shapes.keys().filter(|k| !single.shapes.contains_key(*k)).collect();
        assert!(
            only_single.is_empty() && only_diffusers.is_empty(),
            "{family}: only in the single file: {only_single:?}\nonly in diffusers: {only_diffusers:?}"
        );
        for (name, shape) in &diffusers.shapes {
            assert_eq!(&single.shapes[name], shape, "{family}: {name}");
        }
    }
}

#[test]
fn the_transforms_of_the_real_single_files() {
    // Per family: VAE attention reshapes, OpenCLIP q/k/v row splits, OpenCLIP projection transposes.
    for (family, reshapes, rows, transposes) in [
        ("sd15", 8, 0, 0),
        ("sd15_inpaint", 8, 0, 0),
        ("sdxl_base", 8, 192, 1),
        ("sdxl_refiner", 8, 192, 1),
        ("sdxl_inpaint", 8, 192, 1),
        ("ssd_1b", 8, 192, 1),
    ] {
        let t = map_manifest(&manifest(family, "single_file")).transforms;
        let count = |f: &dyn Fn(&Transform) -> bool| t.values().filter(|(_, x)| f(x)).count();
        assert_eq!(count(&|x| *x == Transform::Reshape), reshapes, "{family}");
        assert_eq!(count(&|x| matches!(x, Transform::Rows { of: 3, .. })), rows, "{family}");
        assert_eq!(count(&|x| *x == Transform::Transpose), transposes, "{family}");
    }
    // Spot checks of the names that need structure: the refiner's OpenCLIP is embedder 0, and
    // its 4-level UNet has upsamplers after attention-free deepest levels.
    let refiner = map_manifest(&manifest("sdxl_refiner", "single_file")).transforms;
    let pins = [
        ("text_encoder_2.text_projection.weight", "conditioner.embedders.0.model.text_projection"),
        ("unet.up_blocks.0.upsamplers.0.conv.weight", "model.diffusion_model.output_blocks.2.1.conv.weight"),
        ("unet.up_blocks.1.upsamplers.0.conv.weight", "model.diffusion_model.output_blocks.5.2.conv.weight"),
        (
            "unet.down_blocks.3.resnets.1.conv2.weight",
            "model.diffusion_model.input_blocks.11.0.out_layers.3.weight",
        ),
        (
            "vae.decoder.up_blocks.0.upsamplers.0.conv.weight",
            "first_stage_model.decoder.up.3.upsample.conv.weight",
        ),
    ];
    for (canonical, stored) in pins {
        assert_eq!(refiner[canonical].0, stored, "{canonical}");
    }
}

#[test]
fn family_detection_on_each_manifest() {
    for family in FAMILIES {
        for format in ["single_file", "diffusers"] {
            let shapes = map_manifest(&manifest(family, format)).shapes;
            let (found, reduced) = detect(&manifest_path(family, format), &shapes).unwrap();
            assert_eq!((found.id(), reduced), (family, false), "{format}");
        }
    }
}

#[test]
fn parameter_counts_per_component_match_the_manifests() {
    for family in FAMILIES {
        for format in ["single_file", "diffusers"] {
            let m = manifest(family, format);
            let shapes = map_manifest(&m).shapes;
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for (name, shape) in &shapes {
                let (c, _) = Component::split_name(name).unwrap();
                *counts.entry(c.prefix().to_string()).or_default() += shape.iter().product::<usize>() as u64;
            }
            assert_eq!(counts, m.parameters, "{family} {format}");
        }
    }
}

#[test]
fn full_size_sparse_checkpoints_open_with_the_right_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        for format in ["single_file", "diffusers"] {
            let m = manifest(family, format);
            let path = m.materialize(&dir.path().join(format!("{family}.{format}"))).unwrap();
            let c = Checkpoint::open(&path).unwrap_or_else(|e| panic!("{family} {format}: {e}"));
            let expected_format = if format == "diffusers" { Format::Diffusers } else { Format::SingleFile };
            assert_eq!(
                (c.format(), c.family(), c.is_reduced()),
                (expected_format, Family::from_id(family).unwrap(), false)
            );
            assert!(c.unrecognised().is_empty() && c.missing_components().is_empty(), "{family} {format}");
            let counts: BTreeMap<String, u64> =
                c.components().iter().map(|i| (i.component.to_string(), i.parameters)).collect();
            assert_eq!(counts, m.parameters, "{family} {format}");
            if format == "diffusers" {
                assert!(
                    c.components().iter().all(|i| matches!(i.config_source, ConfigSource::ConfigJson(_)))
                );
                assert!(c.warnings().is_empty(), "{family}: {:?}", c.warnings());
            }
        }
    }
}

#[test]
fn weights_inferred_configs_equal_the_published_diffusers_configs() {
    // For real models, the single-file configs (weights + published defaults) must be exactly
    // what the published diffusers config.json files say, field for field.
    let dir = tempfile::tempdir().unwrap();
    for family in FAMILIES {
        let open = |format: &str| {
            Checkpoint::open(
                manifest(family, format).materialize(&dir.path().join(format!("{family}.{format}"))).unwrap(),
            )
            .unwrap()
        };
        let (single, diffusers) = (open("single_file"), open("diffusers"));
        for c in Component::ALL {
            let (Some(a), Some(b)) = (single.component(c), diffusers.component(c)) else { continue };
            assert_eq!(a.config, b.config, "{family} {c}");
        }
    }
}

#[test]
fn random_checkpoints_fill_the_kept_tensors_and_leave_the_rest_zero() {
    use kiln_runtime::DType;
    use kiln_runtime::checkpoint::Dtype;
    use kiln_runtime::checkpoint::manifest::RandomFill;

    let dir = tempfile::tempdir().unwrap();
    let m = manifest("sd15", "diffusers");
    let keep = |file: &str, name: &str| file.starts_with("vae/") && name.starts_with("decoder.conv_");
    let write = |sub: &str, seed: u64| {
        let fill = RandomFill { seed, keep: &keep, dtype: Some(Dtype::F16) };
        Checkpoint::open(m.materialize_random(&dir.path().join(sub), &fill).unwrap()).unwrap()
    };
    let (a, b, other_seed) = (write("a", 7), write("b", 7), write("c", 8));
    assert_eq!(a.dtypes().into_iter().collect::<Vec<_>>(), [Dtype::F16], "every float tensor stored as F16");

    let values = |c: &Checkpoint, name: &str| c.tensor(name, DType::F32).unwrap().to_vec_f32().unwrap();
    let conv = "vae.decoder.conv_in.weight"; // [512, 4, 3, 3]: fan-in 36
    let w = values(&a, conv);
    let mean = w.iter().sum::<f32>() / w.len() as f32;
    let var = w.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / w.len() as f32;
    assert!(mean.abs() < 0.01 && (var * 36.0 - 1.0).abs() < 0.05, "mean {mean}, var·fan_in {}", var * 36.0);
    let bias = values(&a, "vae.decoder.conv_out.bias");
    assert!(bias.iter().all(|v| v.abs() <= 0.1) && bias.iter().any(|&v| v != 0.0));
    assert_eq!(w, values(&b, conv), "the same seed gives the same weights");
    assert_ne!(w, values(&other_seed, conv), "another seed gives others");
    let untouched = values(&a, "vae.decoder.mid_block.resnets.0.conv1.weight");
    assert!(untouched.iter().all(|&v| v == 0.0), "tensors not kept read as zeros");
}
