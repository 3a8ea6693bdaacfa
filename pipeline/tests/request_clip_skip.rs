//! `clip_skip` deeper than a model's text encoders is a validation error on `["body",
//! "clip_skip"]`, found when the request is resolved against the model's facts (read from its
//! headers and configs, no weights), never a render failure. The bound is diffusers': the
//! deepest clip_skip its pipelines encode for each small model, recorded by
//! tools/make_clip_skip_fixtures.py (diffusers' convention; the request's is that plus one).

mod request_common;

use std::path::PathBuf;

use kiln_pipeline::generate::{Engine, GenerateError};
use kiln_pipeline::models::ModelFacts;
use kiln_pipeline::request::Request;
use kiln_runtime::checkpoint::Family;
use kiln_runtime::{DType, Device};
use request_common::{body, loc, parse};
use serde_json::{Value, json};

fn limits() -> Value {
    let path = format!("{}/../fixtures/request/clip_skip_limits.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("clip_skip_limits.json")).expect("JSON")
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The deepest request clip_skip (OctoAI's convention) diffusers encodes for `model`.
fn deepest(model: &str) -> usize {
    limits()[model]["max_diffusers_clip_skip"].as_u64().expect("max") as usize + 1
}

fn request(extra: Value) -> Request {
    parse(&body(extra)).request.expect("request parses")
}

#[test]
fn facts_come_from_the_headers_and_match_diffusers_bound() {
    for (model, family) in [("tiny_sd15", Family::Sd15), ("tiny_sdxl", Family::SdxlBase)] {
        let limits = limits();
        let folder = repo(limits[model]["path"].as_str().expect("path"));
        let facts = ModelFacts::read(&folder).expect("facts");
        assert_eq!(facts.family, family, "{model}");
        let layers: Vec<usize> =
            serde_json::from_value(limits[model]["num_hidden_layers"].clone()).expect("layers");
        assert_eq!(facts.text_layers, layers.into_iter().min().expect("an encoder"), "{model}");
        assert_eq!(facts.max_clip_skip(), deepest(model), "{model}");
        // The single-file layout of the same model has the same facts.
        let file = folder.with_extension("safetensors");
        assert_eq!(ModelFacts::read(&file).expect("single file"), facts, "{model}");
    }
}

#[test]
fn a_clip_skip_past_the_deepest_layer_is_an_error_on_clip_skip() {
    for (model, size) in [("tiny_sd15", 512), ("tiny_sdxl", 1024)] {
        let facts = ModelFacts::read(&repo(limits()[model]["path"].as_str().expect("path"))).expect("facts");
        let max = deepest(model);
        let ok = request(json!({"clip_skip": max, "width": size, "height": size})).resolve(facts);
        assert!(ok.is_ok(), "{model}: clip_skip {max} is diffusers' deepest: {:?}", ok.err());

        let too_deep = request(json!({"clip_skip": max + 1, "width": size, "height": size}));
        let error = too_deep.resolve(facts).expect_err("too deep");
        assert_eq!(error.detail.len(), 1, "{error}");
        let e = &error.detail[0];
        assert_eq!(loc(e), [json!("body"), json!("clip_skip")]);
        assert_eq!(e.kind, "value_error");
        assert!(e.msg.contains(&format!("at most {max}")), "names the bound: {}", e.msg);
    }
}

#[test]
fn the_clip_skip_error_comes_in_schema_order_with_the_others() {
    let facts = ModelFacts::read(&repo("fixtures/tiny/sd15")).expect("facts");
    let bad =
        request(json!({"clip_skip": deepest("tiny_sd15") + 1, "width": 100, "height": 100, "prompt_2": "x"}));
    let error = bad.resolve(facts).expect_err("errors");
    let fields: Vec<Value> = error.detail.iter().map(|e| loc(e)[1].clone()).collect();
    // The schema's order: clip_skip, height, prompt_2, width.
    assert_eq!(fields, [json!("clip_skip"), json!("height"), json!("prompt_2"), json!("width")]);
}

#[test]
fn published_models_take_every_clip_skip_the_schema_allows() {
    let schema_max = request_common::property("clip_skip")["limits"]["maximum"].as_f64().expect("maximum");
    for family in Family::ALL {
        let c = schema_max as usize;
        let resolved =
            request(json!({"clip_skip": c, "init_image": "aW1n", "mask_image": "bWFzaw=="})).resolve(family);
        assert!(resolved.is_ok(), "{family:?}: {:?}", resolved.err());
    }
}

#[test]
fn the_engine_renders_the_deepest_clip_skip_and_refuses_one_more() {
    let engine = Engine::load(&repo("fixtures/tiny/sd15"), DType::F32, Device::Cpu).expect("tiny SD 1.5");
    assert_eq!(engine.facts(), ModelFacts::read(&repo("fixtures/tiny/sd15")).expect("facts"));
    let max = deepest("tiny_sd15");
    let job = |clip_skip: usize| {
        let extra = json!({"clip_skip": clip_skip, "steps": 1, "cfg_scale": 1, "seed": 3});
        let mut job = request(extra).resolve(Family::Sd15).expect("resolves for the published model").job;
        (job.width, job.height) = (64, 64);
        job
    };
    let images = engine.render(&[job(max)], 1, &mut |_, _| {}).expect("the deepest clip_skip renders");
    assert_eq!(images[0].len(), 1);
    match engine.render(&[job(max + 1)], 1, &mut |_, _| {}) {
        Err(GenerateError::Input { field: "clip_skip", message }) => {
            assert!(message.contains(&format!("at most {max}")), "{message}")
        }
        other => panic!("expected an input error on clip_skip, got {other:?}"),
    }
}
