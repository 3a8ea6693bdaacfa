//! A request's `vae` in place of the checkpoint's own: [`Engine::set_vae`] with the second VAE
//! of `fixtures/vae/` (the same weights in the original and in diffusers' single-file naming)
//! renders within 2/255 of diffusers with that VAE loaded by `AutoencoderKL.from_single_file`
//! (`tools/make_vae_swap_fixtures.py`), for text-to-image and img2img on the CPU in f32; putting
//! the own VAE back renders exactly as before; bad VAE files are typed errors that leave the VAE
//! in use unchanged.

mod asset_common;

use ::image::RgbImage;
use asset_common::{JobSpec, TOLERANCE, fixture, max_diff, render};
use kiln_pipeline::generate::Engine;
use kiln_runtime::checkpoint::{Checkpoint, Family};
use kiln_runtime::{DType, Device};
use serde::Deserialize;

#[derive(Deserialize)]
struct CasesFile {
    files: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    job: JobSpec,
    expected: String,
}

fn cases() -> CasesFile {
    serde_json::from_str(&std::fs::read_to_string(fixture("vae/cases.json")).unwrap()).unwrap()
}

#[test]
fn another_vae_renders_as_diffusers_with_it_and_the_own_one_comes_back() {
    let file = cases();
    assert_eq!(file.files.len(), 2);
    let mut engine = Engine::load(&fixture("tiny/sd15"), DType::F32, Device::Cpu).unwrap();
    let own: Vec<RgbImage> = file.cases.iter().map(|c| render(&engine, &c.job.job())).collect();
    let mut failures = Vec::new();
    for vae in &file.files {
        let path = fixture("vae").join(vae);
        engine.set_vae(Some(&path)).unwrap();
        assert_eq!(engine.vae_path(), Some(path.as_path()));
        for case in &file.cases {
            let want = ::image::open(fixture("vae").join(&case.expected)).unwrap().to_rgb8();
            let diff = max_diff(&render(&engine, &case.job.job()), &want);
            eprintln!("{vae} {}: max diff {diff}", case.name);
            if diff > TOLERANCE {
                failures.push(format!("{vae} {}: max diff {diff}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    engine.set_vae(None).unwrap();
    assert_eq!(engine.vae_path(), None);
    for (case, before) in file.cases.iter().zip(&own) {
        assert!(
            render(&engine, &case.job.job()) == *before,
            "{}: the own VAE renders differently",
            case.name
        );
    }
}

#[test]
fn a_vae_folder_and_the_vae_of_a_full_checkpoint_open_too() {
    for path in ["tiny/sd15/vae", "tiny/sd15.safetensors"] {
        let ckpt =
            Checkpoint::open_vae(fixture(path), Family::Sd15, None).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(ckpt.vae_config().is_some(), "{path}");
    }
}

#[test]
fn bad_vae_files_are_typed_errors_and_the_vae_in_use_stays() {
    let mut engine = Engine::load(&fixture("tiny/sd15"), DType::F32, Device::Cpu).unwrap();
    let job = cases().cases.remove(0).job.job();
    let before = render(&engine, &job);
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("vae/sd15_other.original.safetensors")).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    // One tensor of the wrong shape (the decoder's last convolution with 2 output channels).
    let reshaped = dir.path().join("reshaped.safetensors");
    {
        let file =
            kiln_runtime::checkpoint::SafetensorsFile::open(&fixture("vae/sd15_other.diffusers.safetensors"))
                .unwrap();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for t in file.tensors() {
            let (mut shape, mut data) = (t.shape().to_vec(), t.data().to_vec());
            if t.name() == "decoder.conv_out.weight" || t.name() == "decoder.conv_out.bias" {
                data.truncate(data.len() / shape[0] * 2);
                shape[0] = 2;
            }
            tensors.push((t.name().to_owned(), shape, data));
        }
        let table: Vec<(&str, kiln_runtime::checkpoint::Dtype, &[usize], &[u8])> = tensors
            .iter()
            .map(|(n, s, d)| (n.as_str(), kiln_runtime::checkpoint::Dtype::F32, s.as_slice(), d.as_slice()))
            .collect();
        kiln_runtime::checkpoint::write::write_safetensors(&reshaped, &table).unwrap();
    }
    let cases = [
        (reshaped, "out_channels"),
        (truncated, "truncated"),
        (fixture("lora/sd15_kohya.safetensors"), "VAE"),
        (dir.path().join("missing.safetensors"), "missing.safetensors"),
    ];
    for (path, says) in cases {
        let err = engine.set_vae(Some(&path)).unwrap_err().to_string();
        assert!(err.contains(says), "{}: {err}", path.display());
        assert_eq!(engine.vae_path(), None);
    }
    assert!(render(&engine, &job) == before, "a failed swap changed the VAE");
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    /// The swap on the GPU (bf16, where the CUDA kernels run), held to the bounds the CUDA
    /// pipeline parity tests use ([`asset_common::cuda_bound`]) from diffusers' f32 image; it
    /// differs from the GPU render with the own VAE, which comes back exactly.
    #[test]
    fn cuda_vae_swap_renders_as_diffusers_does() {
        let gpu = match Device::cuda(0) {
            Ok(device) => device,
            Err(e) => {
                return kiln_runtime::cuda::skip_gpu_test("CUDA VAE swap", &format!("no CUDA device ({e})"));
            }
        };
        let case = cases().cases.remove(0);
        let (job, want) =
            (case.job.job(), ::image::open(fixture("vae").join(&case.expected)).unwrap().to_rgb8());
        let other = fixture("vae/sd15_other.original.safetensors");
        let mut cpu = Engine::load(&fixture("tiny/sd15"), DType::BF16, Device::Cpu).unwrap();
        let mut cuda = Engine::load(&fixture("tiny/sd15"), DType::BF16, gpu).unwrap();
        let own = render(&cuda, &job);
        cpu.set_vae(Some(&other)).unwrap();
        cuda.set_vae(Some(&other)).unwrap();
        let got = render(&cuda, &job);
        let (cpu_diff, gpu_diff) = (max_diff(&render(&cpu, &job), &want), max_diff(&got, &want));
        let bound = asset_common::cuda_bound(cpu_diff);
        eprintln!(
            "bf16 with the other VAE: CPU {cpu_diff}/255, GPU {gpu_diff}/255 from diffusers (bound {bound})"
        );
        assert!(gpu_diff <= bound, "GPU {gpu_diff}/255 from diffusers, CPU bf16 {cpu_diff}/255");
        assert!(max_diff(&got, &own) > bound, "the swap did not change the GPU render");
        cuda.set_vae(None).unwrap();
        assert!(render(&cuda, &job) == own, "the own VAE did not come back");
    }
}
