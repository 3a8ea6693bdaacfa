//! Textual-inversion parity with diffusers: each case of `fixtures/textual_inversion/cases.json`
//! (a multi-vector A1111 `emb_params` file, two embeddings at once with one in the negative
//! prompt, an SDXL `clip_l` + `clip_g` pair) is set with [`Engine::set_textual_inversions`] on
//! the tiny model, rendered on the CPU in f32, and every pixel must be within 2/255 of the image
//! diffusers made after `load_textual_inversion` (`tools/make_textual_inversion_fixtures.py`).
//! Removing the set renders exactly as before; bad embeddings and triggers are typed errors that
//! change nothing.

mod asset_common;

use std::path::{Path, PathBuf};

use asset_common::{FIXTURES, JobSpec, TOLERANCE, max_diff, render};
use kiln_pipeline::embeddings::{EmbeddingError, EmbeddingFile};
use kiln_pipeline::generate::Engine;
use kiln_runtime::{DType, Device};
use serde::Deserialize;

fn dir() -> PathBuf {
    Path::new(FIXTURES).join("textual_inversion")
}

#[derive(Deserialize)]
struct CasesFile {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    embeddings: Vec<Embedding>,
    job: JobSpec,
    expected: String,
}

#[derive(Deserialize)]
struct Embedding {
    file: String,
    trigger: String,
}

fn cases() -> Vec<Case> {
    let file: CasesFile =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    assert!(file.cases.len() >= 3);
    file.cases
}

fn open(name: &str) -> EmbeddingFile {
    EmbeddingFile::open(&dir().join(name)).unwrap()
}

#[test]
fn embeddings_render_as_diffusers_loads_them() {
    let mut failures = Vec::new();
    for model in ["tiny/sd15", "tiny/sdxl"] {
        let mut engine = Engine::load(&Path::new(FIXTURES).join(model), DType::F32, Device::Cpu).unwrap();
        for case in cases().iter().filter(|c| c.model == model) {
            let before = render(&engine, &case.job.job());
            let files: Vec<EmbeddingFile> = case.embeddings.iter().map(|e| open(&e.file)).collect();
            let set: Vec<(String, &EmbeddingFile)> =
                case.embeddings.iter().zip(&files).map(|(e, f)| (e.trigger.clone(), f)).collect();
            engine.set_textual_inversions(&set).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let want = ::image::open(dir().join(&case.expected)).unwrap().to_rgb8();
            let diff = max_diff(&render(&engine, &case.job.job()), &want);
            eprintln!("{}: max diff {diff}", case.name);
            if diff > TOLERANCE {
                failures.push(format!("{}: max diff {diff}", case.name));
            }
            engine.set_textual_inversions(&[]).unwrap();
            assert!(
                render(&engine, &case.job.job()) == before,
                "{}: removing the set changed the render",
                case.name
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bad_embeddings_and_triggers_are_typed_errors_that_change_nothing() {
    let mut sd15 = Engine::load(&Path::new(FIXTURES).join("tiny/sd15"), DType::F32, Device::Cpu).unwrap();
    let style = open("sd15_style.safetensors");
    let xl = open("sdxl_style.safetensors");
    assert_eq!((style.family(), style.vectors()), (None, 2), "tiny widths name no family");
    let err = sd15.set_textual_inversions(&[("kilnstyle".into(), &xl)]).unwrap_err();
    assert!(matches!(err, EmbeddingError::WrongModel { .. }) && err.to_string().contains("SDXL"), "{err}");
    for (trigger, says) in [("cat", "vocabulary"), ("two words", "one word"), ("", "one word")] {
        let err = sd15.set_textual_inversions(&[(trigger.into(), &style)]).unwrap_err();
        assert!(
            matches!(err, EmbeddingError::Trigger { .. }) && err.to_string().contains(says),
            "{trigger:?}: {err}"
        );
    }
    let twice = [("kiln".to_owned(), &style), ("KILN".to_owned(), &style)];
    assert!(sd15.set_textual_inversions(&twice).unwrap_err().to_string().contains("two embeddings"));

    let mut sdxl = Engine::load(&Path::new(FIXTURES).join("tiny/sdxl"), DType::F32, Device::Cpu).unwrap();
    let err = sdxl.set_textual_inversions(&[("kilnstyle".into(), &style)]).unwrap_err();
    assert!(err.to_string().contains("clip_l and clip_g"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dir().join("sd15_style.safetensors")).unwrap();
    std::fs::write(tmp.path().join("cut.safetensors"), &bytes[..bytes.len() - 9]).unwrap();
    assert!(matches!(EmbeddingFile::open(&tmp.path().join("cut.safetensors")), Err(EmbeddingError::File(_))));
    let lora = Path::new(FIXTURES).join("lora/sd15_kohya.safetensors");
    assert!(matches!(EmbeddingFile::open(&lora), Err(EmbeddingError::NotAnEmbedding { .. })));

    // Nothing was set: the trigger is plain text (BPE pieces), not a word of the vocabulary.
    let job = cases().remove(0).job.job();
    let plain = render(&sd15, &job);
    sd15.set_textual_inversions(&[("kilnstyle".into(), &style)]).unwrap();
    assert!(render(&sd15, &job) != plain);
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    /// Embeddings on the GPU (bf16), held to the CUDA pipeline parity bounds
    /// ([`asset_common::cuda_bound`]) from diffusers' image.
    #[test]
    fn cuda_embeddings_render_as_diffusers_loads_them() {
        let gpu = match Device::cuda(0) {
            Ok(device) => device,
            Err(e) => {
                return kiln_runtime::cuda::skip_gpu_test(
                    "CUDA textual inversion",
                    &format!("no CUDA device ({e})"),
                );
            }
        };
        let case = cases().into_iter().find(|c| c.name == "sd15_two").unwrap();
        let files: Vec<EmbeddingFile> = case.embeddings.iter().map(|e| open(&e.file)).collect();
        let set: Vec<(String, &EmbeddingFile)> =
            case.embeddings.iter().zip(&files).map(|(e, f)| (e.trigger.clone(), f)).collect();
        let want = ::image::open(dir().join(&case.expected)).unwrap().to_rgb8();
        let model = Path::new(FIXTURES).join(&case.model);
        let diff_on = |device| {
            let mut engine = Engine::load(&model, DType::BF16, device).unwrap();
            engine.set_textual_inversions(&set).unwrap();
            max_diff(&render(&engine, &case.job.job()), &want)
        };
        let (cpu_diff, gpu_diff) = (diff_on(Device::Cpu), diff_on(gpu));
        let bound = asset_common::cuda_bound(cpu_diff);
        eprintln!(
            "bf16 with embeddings: CPU {cpu_diff}/255, GPU {gpu_diff}/255 from diffusers (bound {bound})"
        );
        assert!(gpu_diff <= bound, "GPU {gpu_diff}/255 from diffusers, CPU bf16 {cpu_diff}/255");
    }
}
