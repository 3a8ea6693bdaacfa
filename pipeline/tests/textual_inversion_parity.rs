//! Textual-inversion parity with diffusers: each case of `fixtures/textual_inversion/cases.json`
//! (a multi-vector A1111 `emb_params` file, two embeddings at once with one in the negative
//! prompt, an SDXL `clip_l` + `clip_g` pair) is set with [`Engine::set_textual_inversions`] on
//! the tiny model, rendered on the CPU in f32, and every pixel must be within 2/255 of the image
//! diffusers made after `load_textual_inversion` (`tools/make_textual_inversion_fixtures.py`).
//! Removing the set renders exactly as before; bad embeddings and triggers are typed errors that
//! change nothing.

use std::path::{Path, PathBuf};

use ::image::RgbImage;
use kiln_pipeline::embeddings::{EmbeddingError, EmbeddingFile};
use kiln_pipeline::generate::{Engine, Job};
use kiln_pipeline::samplers::SamplerName;
use kiln_runtime::{DType, Device};
use serde::Deserialize;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
const TOLERANCE: u8 = 2;

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

#[derive(Deserialize)]
struct JobSpec {
    prompt: String,
    negative_prompt: Option<String>,
    cfg_scale: f32,
    steps: usize,
    sampler: String,
    seeds: Vec<u32>,
    width: usize,
    height: usize,
}

impl Case {
    fn job(&self) -> Job {
        let s = &self.job;
        Job {
            prompt: s.prompt.clone(),
            prompt_2: None,
            negative_prompt: s.negative_prompt.clone(),
            negative_prompt_2: None,
            clip_skip: None,
            cfg_scale: s.cfg_scale,
            steps: s.steps,
            sampler: s.sampler.parse::<SamplerName>().unwrap(),
            seeds: s.seeds.clone(),
            width: s.width,
            height: s.height,
            init: None,
        }
    }
}

fn cases() -> Vec<Case> {
    let file: CasesFile =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    assert!(file.cases.len() >= 3);
    file.cases
}

fn render(engine: &Engine, job: &Job) -> RgbImage {
    engine.render(std::slice::from_ref(job), 4, &mut |_, _| {}).unwrap().remove(0).remove(0)
}

fn max_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
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
            let before = render(&engine, &case.job());
            let files: Vec<EmbeddingFile> = case.embeddings.iter().map(|e| open(&e.file)).collect();
            let set: Vec<(String, &EmbeddingFile)> =
                case.embeddings.iter().zip(&files).map(|(e, f)| (e.trigger.clone(), f)).collect();
            engine.set_textual_inversions(&set).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let want = ::image::open(dir().join(&case.expected)).unwrap().to_rgb8();
            let diff = max_diff(&render(&engine, &case.job()), &want);
            eprintln!("{}: max diff {diff}", case.name);
            if diff > TOLERANCE {
                failures.push(format!("{}: max diff {diff}", case.name));
            }
            engine.set_textual_inversions(&[]).unwrap();
            assert!(
                render(&engine, &case.job()) == before,
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
    let job = cases().remove(0).job();
    let plain = render(&sd15, &job);
    sd15.set_textual_inversions(&[("kilnstyle".into(), &style)]).unwrap();
    assert!(render(&sd15, &job) != plain);
}
