//! Fuzzing the readers of untrusted input with proptest: the request parser (and validation),
//! the prompt-weighting parser, the image decoder and the safetensors header reader. Each must
//! answer every input with a value or a typed error, never a panic, an abort or a hang.
//!
//! Inputs are random text and JSON, and random mutations (bit flips, cuts, spliced and repeated
//! ranges) of real inputs: the example requests and the image fixtures made by PIL. Each target
//! runs batches of cases for `KILN_FUZZ_SECONDS` seconds (default 2; CI gives each 30) and
//! prints how many inputs it ran. A failing input is shrunk and saved by proptest in
//! `fuzz.proptest-regressions` beside this file, and every later run replays the saved inputs
//! first: commit that file with the fix, and the crash stays a regression test.

use std::time::{Duration, Instant};

use kiln_pipeline::image::{MAX_SIDE, decode_bytes};
use kiln_pipeline::prompt::parse_attention;
use kiln_pipeline::request::parse_line;
use kiln_runtime::DType;
use kiln_runtime::checkpoint::{Dtype, Family, SafetensorsFile, write};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::{Map, Value};

const EXAMPLES: &str = include_str!("../../examples/requests.jsonl");
const IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/images/");

/// Runs `test` on inputs from `strategy` for the time budget; returns how many inputs ran.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value)) -> usize {
    let seconds = std::env::var("KILN_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut inputs = 0;
    while inputs == 0 || started.elapsed() < budget {
        let config = Config {
            cases: 64,
            source_file: Some(file!()),
            failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
            ..Config::default()
        };
        let result = TestRunner::new(config).run(&strategy, |value| {
            test(value);
            Ok::<(), TestCaseError>(())
        });
        inputs += 64;
        if let Err(failure) = result {
            panic!("fuzz {name}: {failure}");
        }
    }
    eprintln!("fuzz {name}: {inputs} inputs in {:.1} s, no failure", started.elapsed().as_secs_f64());
    inputs
}

/// Random edits of `seed`: bit flips, a cut, a removed range, a repeated range, random bytes.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len().max(1);
    prop::collection::vec((0..5u8, 0..len, 0..len, any::<u8>()), 1..6).prop_map(move |edits| {
        let mut bytes = seed.clone();
        for (kind, a, b, byte) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let (a, b) = (a % bytes.len(), b % bytes.len());
            let (lo, hi) = (a.min(b), a.max(b));
            match kind {
                0 => bytes[a] ^= 1 << (byte % 8),
                1 => bytes.truncate(a),
                2 => drop(bytes.drain(lo..hi.min(lo + 64))),
                3 => {
                    let copy = bytes[lo..hi.min(lo + 256)].to_vec();
                    bytes.splice(b..b, copy);
                }
                _ => bytes[a] = byte,
            }
        }
        bytes
    })
}

/// Any JSON value, a few levels deep, with numbers and strings near the edges.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![Just(1e308), Just(-0.0), Just(4294967296.0), Just(0.5)].prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The spec's request fields (and kiln's `id`), plus anything.
fn field_name() -> impl Strategy<Value = String> {
    const FIELDS: &[&str] = &[
        "id",
        "prompt",
        "prompt_2",
        "negative_prompt",
        "negative_prompt_2",
        "width",
        "height",
        "steps",
        "cfg_scale",
        "seed",
        "num_images",
        "sampler",
        "style_preset",
        "clip_skip",
        "init_image",
        "mask_image",
        "strength",
        "image_encoding",
        "outpainting",
        "checkpoint",
        "use_refiner",
        "high_noise_frac",
        "loras",
        "vae",
    ];
    prop_oneof![prop::sample::select(FIELDS).prop_map(str::to_owned), ".{0,12}"]
}

/// Parses and, when the line parses, validates it for SD 1.5 and SDXL.
fn parse_and_resolve(text: &str) {
    let line = parse_line(text, 7);
    match line.request {
        Ok(request) => {
            for family in [Family::Sd15, Family::SdxlBase] {
                if let Err(error) = request.resolve(family) {
                    assert!(!error.detail.is_empty(), "an error lists what is wrong: {text}");
                }
            }
        }
        Err(error) => assert!(!error.detail.is_empty(), "an error lists what is wrong: {text}"),
    }
}

#[test]
fn fuzz_the_request_parser() {
    let lines: Vec<Vec<u8>> = EXAMPLES.lines().map(|l| l.as_bytes().to_vec()).collect();
    let edited_examples = prop::sample::select(lines).prop_flat_map(mutated);
    let objects = prop::collection::vec((field_name(), json_value()), 0..8).prop_map(|fields| {
        let mut body: Map<String, Value> = serde_json::from_str(r#"{"prompt": "a boat"}"#).unwrap();
        body.extend(fields);
        Value::Object(body).to_string().into_bytes()
    });
    let text = ".{0,200}".prop_map(String::into_bytes);
    let inputs = prop_oneof![edited_examples, objects, text];
    fuzz("request parser", inputs, |bytes| parse_and_resolve(&String::from_utf8_lossy(&bytes)));
}

#[test]
fn fuzz_the_prompt_parser() {
    let prompt = prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "(", ")", "[", "]", ":", "\\", "BREAK", " ", ",", "1e38", "1.5", "-", "."
            ]),
            Just("word"),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat());
    let inputs = prop_oneof![prompt, ".{0,80}"];
    fuzz("prompt parser", inputs, |prompt| {
        if let Ok(segments) = parse_attention(&prompt) {
            assert!(segments.iter().all(|s| s.weight.is_finite()), "{prompt:?}");
        }
    });
}

#[test]
fn fuzz_the_image_decoder() {
    let seeds: Vec<Vec<u8>> = ["photo.png", "photo_q90.jpg", "photo_lossless.webp", "gray.png", "rgba.png"]
        .iter()
        .map(|name| std::fs::read(format!("{IMAGES}{name}")).unwrap())
        .collect();
    let inputs = prop::sample::select(seeds).prop_flat_map(mutated);
    fuzz("image decoder", inputs, |bytes| {
        if let Ok(image) = decode_bytes(&bytes) {
            assert!(image.width() <= MAX_SIDE && image.height() <= MAX_SIDE);
        }
    });
}

#[test]
fn fuzz_the_safetensors_reader() {
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.safetensors");
    let data: Vec<u8> = (0..48u8).map(|i| i.wrapping_mul(37)).collect();
    write::write_safetensors(
        &valid,
        &[("a.weight", Dtype::F16, &[2, 3], &data[..12]), ("b.bias", Dtype::F32, &[9], &data[12..])],
    )
    .unwrap();
    let path = dir.path().join("fuzzed.safetensors");
    fuzz("safetensors reader", mutated(std::fs::read(&valid).unwrap()), |bytes| {
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(file) = SafetensorsFile::open(&path) {
            for view in file.tensors() {
                let _ = view.to_tensor(DType::F32);
            }
        }
    });
}
