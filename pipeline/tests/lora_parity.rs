//! LoRA parity with diffusers: each case of `fixtures/lora/cases.json` merges its LoRAs (kohya in
//! both UNet layouts, PEFT, LoCon, LoHa, LoKr, two at once with different weights) into the tiny
//! model with [`Engine::set_loras`], renders on the CPU in f32, and every pixel must be within
//! 2/255 of diffusers' image (`tools/make_lora_fixtures.py` says how each was made). Switching
//! sets and back restores the base weights bit for bit; bad LoRAs are typed errors that leave
//! the model as it was.

mod asset_common;

use std::path::{Path, PathBuf};

use asset_common::{FIXTURES, JobSpec, TOLERANCE, max_diff, render};
use kiln_pipeline::generate::Engine;
use kiln_pipeline::lora::{LoraError, LoraFile, WeightedLora};
use kiln_runtime::checkpoint::Dtype;
use kiln_runtime::checkpoint::write::write_safetensors;
use kiln_runtime::{DType, Device};
use serde::Deserialize;

fn lora_dir() -> PathBuf {
    Path::new(FIXTURES).join("lora")
}

#[derive(Deserialize)]
struct CasesFile {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    loras: Vec<LoraSpec>,
    job: JobSpec,
    expected: String,
    largest_change_from_base: u8,
}

#[derive(Deserialize)]
struct LoraSpec {
    file: String,
    weight: f32,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(lora_dir().join("cases.json")).unwrap();
    let file: CasesFile = serde_json::from_str(&text).unwrap();
    assert!(file.cases.len() >= 7, "cases.json holds {} cases", file.cases.len());
    file.cases
}

fn load(model: &str) -> Engine {
    Engine::load(&Path::new(FIXTURES).join(model), DType::F32, Device::Cpu).unwrap()
}

/// Every patchable weight's bytes, by name.
fn weights(engine: &Engine) -> Vec<(String, Vec<f32>)> {
    engine.weights().iter().map(|(name, w)| (name.clone(), w.get().to_vec_f32().unwrap())).collect()
}

#[test]
fn loras_render_as_diffusers_applies_them() {
    let mut failures = Vec::new();
    for model in ["tiny/sd15", "tiny/sdxl"] {
        let mut engine = load(model);
        for case in cases().iter().filter(|c| c.model == model) {
            let files: Vec<LoraFile> =
                case.loras.iter().map(|l| LoraFile::open(&lora_dir().join(&l.file)).unwrap()).collect();
            let set: Vec<WeightedLora> = files
                .iter()
                .zip(&case.loras)
                .map(|(file, l)| WeightedLora { file, weight: l.weight })
                .collect();
            let reports = engine.set_loras(&set).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            for (report, file) in reports.iter().zip(&files) {
                assert_eq!(report.applied, file.modules().len(), "{}: {report:?}", case.name);
                assert!(report.unmapped.is_empty(), "{}: {report:?}", case.name);
            }
            let want = ::image::open(lora_dir().join(&case.expected)).unwrap().to_rgb8();
            let got = render(&engine, &case.job.job());
            let diff = max_diff(&got, &want);
            eprintln!(
                "{}: max diff {diff} (the LoRA moves the image by up to {})",
                case.name, case.largest_change_from_base
            );
            if diff > TOLERANCE {
                failures.push(format!("{}: max diff {diff}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn switching_sets_restores_the_base_weights_bit_for_bit() {
    let mut engine = load("tiny/sd15");
    let base = weights(&engine);
    let open = |name: &str| LoraFile::open(&lora_dir().join(name)).unwrap();
    let (kohya, locon, loha) =
        (open("sd15_kohya.safetensors"), open("sd15_locon.safetensors"), open("sd15_loha.safetensors"));

    engine
        .set_loras(&[WeightedLora { file: &kohya, weight: 0.8 }, WeightedLora { file: &locon, weight: -0.5 }])
        .unwrap();
    assert_eq!(engine.loras().len(), 2);
    let merged = weights(&engine);
    let changed = merged.iter().zip(&base).filter(|(m, b)| m.1 != b.1).count();
    assert!(changed > 20, "only {changed} weights changed");

    engine.set_loras(&[WeightedLora { file: &loha, weight: 1.0 }]).unwrap();
    engine.set_loras(&[]).unwrap();
    assert!(engine.loras().is_empty());
    let restored = weights(&engine);
    assert!(restored == base, "restored weights differ from the base weights");
}

/// A copy of the LoRA `from` with each tensor passed through `edit` (`None` drops it), stored as f32.
fn doctored(
    from: &str,
    path: &Path,
    edit: impl Fn(&str, Vec<f32>, Vec<usize>) -> Option<(String, Vec<f32>, Vec<usize>)>,
) -> LoraFile {
    let source = LoraFile::open(&lora_dir().join(from)).unwrap();
    let mut tensors = Vec::new();
    for module in source.modules().values() {
        for tensor_name in module.parts.values() {
            let (values, shape) = source.values(tensor_name).unwrap();
            tensors.extend(edit(tensor_name, values, shape));
        }
    }
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let table: Vec<(&str, Dtype, &[usize], &[u8])> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, _, s), b)| (n.as_str(), Dtype::F32, s.as_slice(), b.as_slice()))
        .collect();
    write_safetensors(path, &table).unwrap();
    LoraFile::open(path).unwrap()
}

#[test]
fn bad_loras_are_typed_errors_and_leave_the_model_intact() {
    let mut engine = load("tiny/sd15");
    let base = weights(&engine);
    let dir = tempfile::tempdir().unwrap();
    let kohya = LoraFile::open(&lora_dir().join("sd15_kohya.safetensors")).unwrap();
    engine.set_loras(&[WeightedLora { file: &kohya, weight: 1.0 }]).unwrap();
    let with_kohya = weights(&engine);
    engine.set_loras(&[]).unwrap();

    // One module's up projection one row short: the error names the module, nothing changes.
    let short = doctored("sd15_kohya.safetensors", &dir.path().join("short.safetensors"), |name, v, s| {
        if name.ends_with("mid_block_attentions_0_proj_out.lora_up.weight") {
            let rows = s[0] - 1;
            Some((
                name.to_owned(),
                v[..v.len() / s[0] * rows].to_vec(),
                [vec![rows], s[1..].to_vec()].concat(),
            ))
        } else {
            Some((name.to_owned(), v, s))
        }
    });
    let err = engine.set_loras(&[WeightedLora { file: &short, weight: 1.0 }]).unwrap_err();
    assert!(
        matches!(err, LoraError::Tensor { ref key, .. } if key.contains("mid_block_attentions_0_proj_out")),
        "{err}"
    );
    assert!(weights(&engine) == base, "a failed merge left weights changed");
    assert!(engine.loras().is_empty());

    // An SDXL LoRA on SD 1.5 names the family.
    let sdxl = LoraFile::open(&lora_dir().join("sdxl_kohya.safetensors")).unwrap();
    let err = engine.set_loras(&[WeightedLora { file: &sdxl, weight: 1.0 }]).unwrap_err();
    assert!(matches!(err, LoraError::WrongFamily { .. }) && err.to_string().contains("SDXL"), "{err}");

    // Keys that name nothing the model has (a misspelt prefix).
    let renamed =
        doctored("sd15_kohya.safetensors", &dir.path().join("renamed.safetensors"), |name, v, s| {
            Some((name.replace("lora_unet_", "lora_unet_model_").replace("lora_te_", "lora_te_model_"), v, s))
        });
    let err = engine.set_loras(&[WeightedLora { file: &renamed, weight: 1.0 }]).unwrap_err();
    assert!(matches!(err, LoraError::MostlyUnmapped { mapped: 0, .. }), "{err}");
    assert!(weights(&engine) == base);

    // A truncated file and a safetensors file that is not a LoRA.
    let bytes = std::fs::read(lora_dir().join("sd15_kohya.safetensors")).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(LoraFile::open(&truncated).unwrap_err(), LoraError::File { .. }));
    let not_lora = Path::new(FIXTURES).join("images/reference.safetensors");
    assert!(matches!(LoraFile::open(&not_lora).unwrap_err(), LoraError::NotALora { .. }));

    // A failed set leaves the base weights; a good set merges as before.
    engine.set_loras(&[WeightedLora { file: &kohya, weight: 1.0 }]).unwrap();
    assert!(weights(&engine) == with_kohya);
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    /// Merging on the GPU (bf16, where the CUDA kernels run) gives the CPU's bf16 merged weights
    /// bit for bit (the same update rounded to bf16, each sum computed in f32 and rounded once),
    /// and switching back restores the uploaded originals exactly.
    #[test]
    fn cuda_merge_equals_the_cpu_merge_and_restores() {
        let gpu = match Device::cuda(0) {
            Ok(device) => device,
            Err(e) => {
                return kiln_runtime::cuda::skip_gpu_test(
                    "CUDA LoRA merge",
                    &format!("no CUDA device ({e})"),
                );
            }
        };
        let path = Path::new(FIXTURES).join("tiny/sd15");
        let mut cpu = Engine::load(&path, DType::BF16, Device::Cpu).unwrap();
        let mut cuda = Engine::load(&path, DType::BF16, gpu).unwrap();
        let base = weights(&cuda);
        let open = |name: &str| LoraFile::open(&lora_dir().join(name)).unwrap();
        let (kohya, lokr) = (open("sd15_kohya.safetensors"), open("sd15_lokr.safetensors"));
        let set = [WeightedLora { file: &kohya, weight: 0.7 }, WeightedLora { file: &lokr, weight: 0.4 }];
        cpu.set_loras(&set).unwrap();
        cuda.set_loras(&set).unwrap();
        assert!(weights(&cuda) == weights(&cpu), "the GPU merge differs from the CPU merge");
        assert!(weights(&cuda) != base);
        cuda.set_loras(&[]).unwrap();
        assert!(weights(&cuda) == base, "the GPU weights were not restored");
    }
}
