//! The text encoders at the published sizes (SD 1.5's CLIP-L; SDXL base's CLIP-L + OpenCLIP-G),
//! on sparse all-zero checkpoints written from fixtures/manifests: the conditioning shapes the
//! UNets expect, and the CPU time of one prompt. Ignored by default (it maps ~7 GB of sparse
//! files and runs ~100 GFLOP); run with
//! `cargo test -p kiln-pipeline --test text_full_size -- --ignored --nocapture`.

use std::time::Instant;

use kiln_pipeline::models::conditioning::TextConditioner;
use kiln_runtime::checkpoint::Checkpoint;
use kiln_runtime::checkpoint::manifest::Manifest;
use kiln_runtime::{DType, Device};

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/manifests");

fn run(manifest: &str, context: usize, pooled: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let path =
        Manifest::read(format!("{MANIFESTS}/{manifest}").as_ref()).unwrap().materialize(dir.path()).unwrap();
    let ckpt = Checkpoint::open(&path).unwrap();
    let t = Instant::now();
    let conditioner = TextConditioner::load(&ckpt, DType::F32, Device::Cpu).unwrap();
    let loaded = t.elapsed();
    let t = Instant::now();
    let c = conditioner.encode_pair("a photo of a cat", None, Some("blurry"), None, None).unwrap();
    let encoded = t.elapsed();
    eprintln!("{manifest}: load {loaded:.2?}, prompt + negative (2 x 77 tokens) {encoded:.2?}");
    assert_eq!(c.positive.hidden.dims(), &[1, 77, context]);
    assert_eq!(c.negative.hidden.dims(), &[1, 77, context]);
    assert_eq!(c.positive.pooled.map(|p| p.dims().to_vec()), pooled.map(|p| vec![1, p]));
}

#[test]
#[ignore = "maps multi-GB sparse checkpoints; run explicitly for shapes and timing"]
fn sd15_full_size_text_encoder() {
    run("sd15.single_file.json", 768, None);
}

#[test]
#[ignore = "maps multi-GB sparse checkpoints; run explicitly for shapes and timing"]
fn sdxl_base_full_size_text_encoders() {
    run("sdxl_base.single_file.json", 2048, Some(1280));
}
