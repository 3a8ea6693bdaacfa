//! kiln's `TorchGenerator` against `torch.randn` / `torch.rand` on a seeded CPU generator, bit for
//! bit (f32 bit patterns equal). Reference: `fixtures/parity/rng.safetensors`, made by
//! `tools/make_rng_fixtures.py` (its header lists the cases: seeds, latent shapes, the < 16 and
//! not-a-multiple-of-16 paths, consecutive draws on one generator).

use kiln_pipeline::rng::{BoxMullerKernel, TorchGenerator};
use kiln_runtime::{DType, Device};
use safetensors::SafeTensors;
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/parity/rng.safetensors");

fn floats(st: &SafeTensors, name: &str) -> Vec<f32> {
    let view = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
    view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn sum_f64(st: &SafeTensors, name: &str) -> f64 {
    let view = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(view.dtype(), safetensors::Dtype::F64, "{name}");
    f64::from_le_bytes(view.data()[..8].try_into().expect("8 bytes"))
}

/// First index where the bit patterns differ, with both values, or None.
fn first_mismatch(ours: &[f32], torch: &[f32]) -> Option<(usize, f32, f32)> {
    ours.iter().zip(torch).position(|(a, b)| a.to_bits() != b.to_bits()).map(|i| (i, ours[i], torch[i]))
}

fn check(label: &str, ours: &[f32], torch: &[f32]) {
    assert_eq!(ours.len(), torch.len(), "{label}: length");
    if let Some((i, a, b)) = first_mismatch(ours, torch) {
        let count = ours.iter().zip(torch).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        panic!("{label}: {count} of {} values differ; first at {i}: kiln {a:e} torch {b:e}", ours.len());
    }
}

/// Compares one draw with what the fixture stored for it (everything, or head/tail/stride/sum).
fn check_draw(st: &SafeTensors, key: &str, full: bool, stride_step: usize, ours: &[f32]) {
    if full {
        check(key, ours, &floats(st, key));
        return;
    }
    let head = floats(st, &format!("{key}.head"));
    let tail = floats(st, &format!("{key}.tail"));
    let stride = floats(st, &format!("{key}.stride"));
    check(&format!("{key}.head"), &ours[..head.len()], &head);
    check(&format!("{key}.tail"), &ours[ours.len() - tail.len()..], &tail);
    let strided: Vec<f32> = ours.iter().step_by(stride_step).copied().collect();
    check(&format!("{key}.stride"), &strided, &stride);
    let sum: f64 = ours.iter().map(|&v| v as f64).sum();
    let reference = sum_f64(st, &format!("{key}.sum"));
    // torch sums with pairwise/vectorised order: allow rounding of the sum only.
    assert!((sum - reference).abs() <= 1e-9 * ours.len() as f64, "{key}.sum: kiln {sum} torch {reference}");
}

/// Replays every case of a fixture file on fresh generators; returns how many draws were checked.
fn replay(path: &str, kernel: BoxMullerKernel, capabilities: &[&str]) -> usize {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("header");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let info: Value =
        serde_json::from_str(&meta.metadata().as_ref().expect("metadata")["fixture"]).expect("fixture json");
    let capability = info["capability"].as_str().expect("capability");
    assert!(capabilities.contains(&capability), "{path} made by a torch with capability {capability}");
    let stride_step = info["stride"].as_u64().expect("stride") as usize;
    let mut draws_checked = 0;
    for case in info["cases"].as_array().expect("cases") {
        let seed = case["seed"].as_u64().expect("seed");
        let mut generator = TorchGenerator::with_kernel(seed, kernel);
        for draw in case["draws"].as_array().expect("draws") {
            let shape: Vec<usize> = draw["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            let ours = match draw["op"].as_str() {
                Some("randn") => generator.randn_nchw(&shape),
                Some("rand") => generator.rand_nchw(&shape),
                other => panic!("unknown op {other:?}"),
            };
            assert_eq!(ours.len() as u64, draw["numel"].as_u64().expect("numel"));
            let key = draw["key"].as_str().expect("key");
            check_draw(&st, key, draw["full"].as_bool().expect("full"), stride_step, &ours);
            draws_checked += 1;
        }
    }
    draws_checked
}

/// The default generator against torch on an x86 AVX2/AVX-512 machine: 36 single draws (6 seeds
/// x 6 shapes) and 4 sequences of consecutive draws mixing paths and `rand`.
#[test]
fn every_case_matches_torch_bit_for_bit() {
    let draws = replay(FIXTURE, BoxMullerKernel::X86Avx2, &["AVX2", "AVX512"]);
    assert!(draws >= 50, "only {draws} draws");
}

/// The portable kernel against torch run with `ATEN_CPU_CAPABILITY=default` (libm transcendental
/// functions: the same libm must be underneath, so Linux/glibc only).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn portable_kernel_matches_torch_default_build() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/parity/rng_default_cpu.safetensors");
    let draws = replay(path, BoxMullerKernel::Portable, &["DEFAULT"]);
    assert_eq!(draws, 6);
}

/// The two kernels really differ (so each fixture pins its own kernel down).
#[test]
fn kernels_differ_in_last_bits() {
    let avx2 = TorchGenerator::new(0).randn_nchw(&[1, 4, 64, 64]);
    let portable = TorchGenerator::with_kernel(0, BoxMullerKernel::Portable).randn_nchw(&[1, 4, 64, 64]);
    let differing = avx2.iter().zip(&portable).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    let max_diff = avx2.iter().zip(&portable).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(differing > 1000 && max_diff < 1e-5, "{differing} differ, max {max_diff}");
}

/// `randn_nhwc` holds torch's values permuted to [B, H, W, C]; the tensor helper keeps them.
#[test]
fn nhwc_layout_and_tensor_hold_torch_values() {
    let bytes = std::fs::read(FIXTURE).expect("read fixture");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let torch = floats(&st, "seed42_1x4x3x5.0"); // [1, 4, 3, 5], NCHW
    let nhwc = TorchGenerator::new(42).randn_nhwc([1, 4, 3, 5]);
    for c in 0..4 {
        for h in 0..3 {
            for w in 0..5 {
                let (a, b) = (nhwc[(h * 5 + w) * 4 + c], torch[(c * 3 + h) * 5 + w]);
                assert_eq!(a.to_bits(), b.to_bits(), "(c {c}, h {h}, w {w})");
            }
        }
    }
    let tensor = TorchGenerator::new(42).randn_tensor([1, 4, 3, 5], DType::F32, Device::Cpu).expect("tensor");
    assert_eq!(tensor.dims(), &[1, 3, 5, 4]);
    let values = tensor.to_vec_f32().expect("host values");
    check("randn_tensor", &values, &nhwc);
}
