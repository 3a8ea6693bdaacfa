//! `kiln assets DIR`: every entry of a library with the kind and family its tensors say, and
//! whether requests can use it or why not; exit 2 when the folder cannot be read.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

#[test]
fn the_library_is_listed_with_kinds_families_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    let fixture = |p: &str| Path::new(FIXTURES).join(p);
    copy_dir(Path::new(TINY_SD15), &lib.join("checkpoints/tiny"));
    std::fs::write(lib.join("checkpoints/tiny.json"), r#"{"timestep_spacing": "trailing"}"#).unwrap();
    std::fs::create_dir_all(lib.join("loras")).unwrap();
    std::fs::copy(fixture("lora/sd15_loha.safetensors"), lib.join("checkpoints/misplaced.safetensors"))
        .unwrap();
    std::fs::copy(fixture("lora/sdxl_kohya.safetensors"), lib.join("loras/xl.safetensors")).unwrap();
    std::fs::copy(fixture("lora/sd15_lokr.safetensors"), lib.join("loras/lokr.safetensors")).unwrap();
    std::fs::write(lib.join("loras/old.pt"), b"PK").unwrap();
    let bytes = std::fs::read(fixture("lora/sd15_peft.safetensors")).unwrap();
    std::fs::write(lib.join("loras/cut.safetensors"), &bytes[..100]).unwrap();

    let output = kiln().args(["assets", "--json"]).arg(&lib).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let entries: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let entry = |name: &str| {
        entries.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{name}: {entries:?}"))
    };
    let brief = |name: &str| {
        let e = entry(name);
        (
            e["folder"].as_str().unwrap(),
            e["kind"].as_str().unwrap(),
            e["family"].as_str(),
            e["usable"].as_bool().unwrap(),
        )
    };
    assert_eq!(entries.len(), 6, "the settings file is not an entry: {entries:?}");
    assert_eq!(brief("tiny"), ("checkpoints", "checkpoint", Some("SD 1.5"), true));
    assert!(entry("tiny")["note"].as_str().unwrap().contains("tiny.json"));
    assert_eq!(brief("misplaced"), ("checkpoints", "LoHa", None, false));
    assert!(entry("misplaced")["note"].as_str().unwrap().contains("belongs in loras/"));
    assert_eq!(brief("xl"), ("loras", "LoRA", Some("SDXL"), true));
    assert!(entry("xl")["note"].as_str().unwrap().contains("original layout"));
    assert_eq!(brief("lokr"), ("loras", "LoKr", None, true));
    assert_eq!(brief("old.pt"), ("loras", "unknown", None, false));
    assert_eq!(brief("cut"), ("loras", "unknown", None, false));
    assert!(entry("cut")["note"].as_str().unwrap().contains("truncated"));

    // The text form: one block per folder, a line per entry.
    let output = kiln().arg("assets").arg(&lib).output().unwrap();
    let text = stdout(&output);
    assert!(text.starts_with("checkpoints/\n") && text.contains("\nloras/\n"), "{text}");
    assert_eq!(text.lines().count(), 2 + entries.len(), "{text}");

    let output = kiln().arg("assets").arg(dir.path().join("nowhere")).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("nowhere"));
}
