//! The CLIP tokenizer against transformers' `CLIPTokenizer` and the reference A1111 chunker of
//! tools/make_tokenizer_fixtures.py (fixtures/parity/tokenizer.json): token ids of 48 prompts
//! for SD 1.5's tokenizer and SDXL's tokenizer_2, from the folders and from the embedded
//! vocabulary, untruncated, padded to 77, and as long-prompt windows.

use kiln_pipeline::tokenizer::{ClipTokenizer, TokenizerError, WindowOptions};
use kiln_runtime::checkpoint::Component;
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/parity/tokenizer.json");
const SD15_TOKENIZER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny/sd15/tokenizer");
const SDXL_TOKENIZER_2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny/sdxl/tokenizer_2");

fn cases() -> Vec<Value> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn windows(v: &Value) -> Vec<Vec<u32>> {
    v.as_array().unwrap().iter().map(ids).collect()
}

/// Compares every case for one tokenizer (`key`: "sd15" or "sdxl2").
fn check(tok: &ClipTokenizer, key: &str) {
    let cases = cases();
    assert!(cases.len() >= 40);
    let mut multi_window = 0;
    for case in &cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text), ids(&case[format!("ids_{key}")]), "ids of {text:?}");
        assert_eq!(tok.encode_padded(text), ids(&case[format!("padded_{key}")]), "padded ids of {text:?}");
        let got = tok.windows(text, WindowOptions::default());
        let want = windows(&case[format!("windows_{key}")]);
        multi_window += usize::from(want.len() > 1);
        assert_eq!(got.windows, want, "windows of {text:?}");
        assert_eq!(got.dropped_tokens as u64, case[format!("dropped_{key}")].as_u64().unwrap(), "{text:?}");
    }
    assert!(multi_window >= 8, "the fixture exercises long prompts");
}

#[test]
fn sd15_folder_tokenizer_matches_transformers() {
    let tok = ClipTokenizer::from_dir(SD15_TOKENIZER).unwrap();
    assert_eq!((tok.bos(), tok.eos(), tok.pad()), (49406, 49407, 49407));
    check(&tok, "sd15");
}

#[test]
fn sdxl_tokenizer_2_folder_matches_transformers() {
    let tok = ClipTokenizer::from_dir(SDXL_TOKENIZER_2).unwrap();
    assert_eq!((tok.bos(), tok.eos(), tok.pad()), (49406, 49407, 0));
    check(&tok, "sdxl2");
}

#[test]
fn embedded_tokenizers_match_transformers() {
    check(&ClipTokenizer::embedded(Component::TextEncoder), "sd15");
    check(&ClipTokenizer::embedded(Component::TextEncoder2), "sdxl2");
}

/// A 500-token prompt keeps 3 windows and reports the rest as dropped (no panic, no error).
#[test]
fn overlong_prompt_is_truncated_and_reported() {
    let tok = ClipTokenizer::embedded(Component::TextEncoder);
    let case = cases().into_iter().find(|c| c["ids_sd15"].as_array().unwrap().len() == 502).unwrap();
    let w = tok.windows(case["text"].as_str().unwrap(), WindowOptions::default());
    assert_eq!(w.windows.len(), 3);
    let kept: usize = w.windows.iter().map(|w| w[1..].iter().take_while(|&&t| t != 49407).count()).sum();
    assert_eq!(kept + w.dropped_tokens, 500);
    assert!(w.dropped_tokens > 250);
}

#[test]
fn broken_tokenizer_files_are_typed_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["merges.txt", "tokenizer_config.json"] {
        std::fs::copy(format!("{SD15_TOKENIZER}/{name}"), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("vocab.json"), "{not json").unwrap();
    match ClipTokenizer::from_dir(dir.path()) {
        Err(TokenizerError::Parse { path, .. }) => assert!(path.ends_with("vocab.json")),
        other => panic!("expected a parse error naming vocab.json, got {other:?}"),
    }
    std::fs::copy(format!("{SD15_TOKENIZER}/vocab.json"), dir.path().join("vocab.json")).unwrap();
    std::fs::write(dir.path().join("merges.txt"), "#version: 0.2\ni n\nthree parts here\n").unwrap();
    match ClipTokenizer::from_dir(dir.path()) {
        Err(TokenizerError::Parse { path, reason }) => {
            assert!(path.ends_with("merges.txt"));
            assert!(reason.contains("line 3"), "{reason}");
        }
        other => panic!("expected a parse error naming merges.txt, got {other:?}"),
    }
    std::fs::remove_file(dir.path().join("merges.txt")).unwrap();
    match ClipTokenizer::from_dir(dir.path()) {
        Err(TokenizerError::Io { path, .. }) => assert!(path.ends_with("merges.txt")),
        other => panic!("expected an io error naming merges.txt, got {other:?}"),
    }
    std::fs::copy(format!("{SD15_TOKENIZER}/merges.txt"), dir.path().join("merges.txt")).unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"pad_token": 3}"#).unwrap();
    match ClipTokenizer::from_dir(dir.path()) {
        Err(TokenizerError::Parse { path, .. }) => assert!(path.ends_with("tokenizer_config.json")),
        other => panic!("expected a parse error naming tokenizer_config.json, got {other:?}"),
    }
}
