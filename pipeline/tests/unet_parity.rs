//! UNet parity with diffusers' `UNet2DConditionModel` (float32, CPU), on the tiny checkpoints in
//! both layouts, and the UNet's typed errors for weights and inputs that do not fit.
//!
//! Expected outputs come from `tools/make_unet_fixtures.py` (`fixtures/parity/unet_*.safetensors`,
//! tensors NHWC: see the script's header).

#[cfg(feature = "cuda")]
mod half_tolerance;

use std::path::{Path, PathBuf};

use kiln_pipeline::models::ModelError;
use kiln_pipeline::models::unet::{AddedConditioning, UNet};
use kiln_runtime::checkpoint::{Checkpoint, Family, OpenOptions};
use kiln_runtime::{DType, Device, Tensor};
use safetensors::SafeTensors;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny");
const PARITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/parity");

fn tiny(name: &str) -> PathBuf {
    Path::new(TINY).join(name)
}

/// The diffusers folder of `model`.
fn open_folder(model: &str) -> Checkpoint {
    Checkpoint::open(tiny(model)).unwrap_or_else(|e| panic!("{model}: {e}"))
}

/// The single file of `model`, sized by its folder's config.json (reduced models need it, as
/// diffusers' `from_single_file` needs `config=`).
fn open_single(model: &str) -> Checkpoint {
    let options = OpenOptions::default().config_dir(tiny(model));
    Checkpoint::open_with(tiny(&format!("{model}.safetensors")), &options)
        .unwrap_or_else(|e| panic!("{model}.safetensors: {e}"))
}

/// One parity case: inputs and diffusers' output.
struct Case {
    latents: Tensor,
    timesteps: Vec<f32>,
    context: Tensor,
    added: Option<AddedConditioning>,
    expected: Vec<f32>,
    expected_shape: Vec<usize>,
}

fn f32_tensor(st: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
    let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    (data, view.shape().to_vec())
}

fn cpu_tensor(st: &SafeTensors, name: &str) -> Tensor {
    let (data, shape) = f32_tensor(st, name);
    Tensor::from_f32(data, &shape, DType::F32, Device::Cpu).unwrap()
}

fn cases(model: &str) -> Vec<Case> {
    let bytes = std::fs::read(Path::new(PARITY).join(format!("unet_{model}.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = Vec::new();
    for k in 0.. {
        let p = format!("case{k}.");
        if st.tensor(&format!("{p}latents")).is_err() {
            break;
        }
        let added = st.tensor(&format!("{p}text_embeds")).is_ok().then(|| AddedConditioning {
            text_embeds: cpu_tensor(&st, &format!("{p}text_embeds")),
            time_ids: f32_tensor(&st, &format!("{p}time_ids")).0,
        });
        let (expected, expected_shape) = f32_tensor(&st, &format!("{p}noise_pred"));
        out.push(Case {
            latents: cpu_tensor(&st, &format!("{p}latents")),
            timesteps: f32_tensor(&st, &format!("{p}timesteps")).0,
            context: cpu_tensor(&st, &format!("{p}context")),
            added,
            expected,
            expected_shape,
        });
    }
    assert!(out.len() >= 2, "{model}: parity file has {} cases", out.len());
    out
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut diff, mut norm) = (0f64, 0f64);
    for (&a, &b) in got.iter().zip(want) {
        diff += (a as f64 - b as f64).powi(2);
        norm += (b as f64).powi(2);
    }
    (diff / norm).sqrt()
}

/// Runs every case of `model` through `ckpt`'s UNet in `dtype` on `device`: each case's output
/// (host f32) and its relative L2 error against diffusers'.
fn run_cases(
    label: &str,
    model: &str,
    ckpt: &Checkpoint,
    dtype: DType,
    device: Device,
) -> Vec<(Vec<f32>, f64)> {
    let unet = UNet::load(ckpt, dtype, device).unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut out = Vec::new();
    for (k, case) in cases(model).iter().enumerate() {
        let got = unet
            .forward(&case.latents, &case.timesteps, &case.context, case.added.as_ref())
            .unwrap_or_else(|e| panic!("{label} case {k}: {e}"));
        assert_eq!(got.dims(), case.expected_shape.as_slice(), "{label} case {k}");
        let got = got.to_vec_f32().unwrap();
        let err = rel_l2(&got, &case.expected);
        out.push((got, err));
    }
    out
}

/// Every case of `model` through `ckpt`'s UNet in `dtype` on `device`, within `tol`.
fn check_parity(label: &str, model: &str, ckpt: &Checkpoint, dtype: DType, device: Device, tol: f64) {
    for (k, (_, err)) in run_cases(label, model, ckpt, dtype, device).into_iter().enumerate() {
        eprintln!("{label} case {k}: relative L2 error {err:.2e}");
        assert!(err <= tol, "{label} case {k}: relative L2 error {err:.3e} > {tol:.0e}");
    }
}

const CPU_TOL: f64 = 1e-4;

#[test]
fn sd15_matches_diffusers_from_both_layouts() {
    check_parity("sd15 folder", "sd15", &open_folder("sd15"), DType::F32, Device::Cpu, CPU_TOL);
    check_parity("sd15 single file", "sd15", &open_single("sd15"), DType::F32, Device::Cpu, CPU_TOL);
}

#[test]
fn sdxl_matches_diffusers_from_both_layouts() {
    check_parity("sdxl folder", "sdxl", &open_folder("sdxl"), DType::F32, Device::Cpu, CPU_TOL);
    check_parity("sdxl single file", "sdxl", &open_single("sdxl"), DType::F32, Device::Cpu, CPU_TOL);
}

#[test]
fn sdxl_refiner_matches_diffusers_from_both_layouts() {
    let folder = open_folder("sdxl_refiner");
    assert_eq!(folder.family(), Family::SdxlRefiner);
    check_parity("refiner folder", "sdxl_refiner", &folder, DType::F32, Device::Cpu, CPU_TOL);
    let single = open_single("sdxl_refiner");
    assert_eq!(single.family(), Family::SdxlRefiner);
    check_parity("refiner single file", "sdxl_refiner", &single, DType::F32, Device::Cpu, CPU_TOL);
}

#[test]
fn ssd_1b_matches_diffusers_from_both_layouts() {
    // Uneven transformer depths within the up blocks and a resnet-only mid block.
    let folder = open_folder("ssd_1b");
    assert_eq!(folder.family(), Family::Ssd1b);
    check_parity("ssd-1b folder", "ssd_1b", &folder, DType::F32, Device::Cpu, CPU_TOL);
    let single = open_single("ssd_1b");
    assert_eq!(single.family(), Family::Ssd1b);
    assert_eq!(single.unet_config(), folder.unet_config());
    check_parity("ssd-1b single file", "ssd_1b", &single, DType::F32, Device::Cpu, CPU_TOL);
}

#[test]
fn inpainting_unets_match_diffusers() {
    let sd15 = open_folder("sd15_inpaint");
    assert_eq!(sd15.family(), Family::Sd15Inpaint);
    check_parity("sd15 inpaint folder", "sd15_inpaint", &sd15, DType::F32, Device::Cpu, CPU_TOL);
    let single = open_single("sd15_inpaint");
    assert_eq!(single.family(), Family::Sd15Inpaint);
    check_parity("sd15 inpaint single file", "sd15_inpaint", &single, DType::F32, Device::Cpu, CPU_TOL);
    let sdxl = open_folder("sdxl_inpaint");
    assert_eq!(sdxl.family(), Family::SdxlInpaint);
    check_parity("sdxl inpaint folder", "sdxl_inpaint", &sdxl, DType::F32, Device::Cpu, CPU_TOL);
}

/// The largest relative L2 difference allowed between the CUDA and the CPU backend's bf16
/// outputs: see the measurements on [`cuda_bf16_matches_diffusers`].
#[cfg(feature = "cuda")]
const CUDA_VS_CPU_BF16: f64 = 2.5e-2;

/// bf16 on CUDA: every case of every tiny UNet, bounded as tests/half_tolerance explains: CUDA
/// vs diffusers <= max(1e-2, 1.25 x kiln's CPU bf16 vs diffusers), and CUDA vs CPU bf16 <=
/// [`CUDA_VS_CPU_BF16`].
///
/// Measured on the software GPU (8 cases): CPU bf16 vs diffusers 1.43e-2..2.52e-2, CUDA vs
/// diffusers 1.30e-2..2.47e-2 (0.91..1.09 x the CPU's), CUDA vs CPU bf16 7.8e-3..1.83e-2. The
/// two backends are nearly as far apart as each is from f32 (up to 0.89 x the CPU's error):
/// only the shared bf16 rounding of the weights cancels, and in a UNet a half-ulp flip of one
/// early activation spreads through every later layer as far as bf16 rounding itself does.
/// [`CUDA_VS_CPU_BF16`] is 1.4 x the largest measured.
#[cfg(feature = "cuda")]
#[test]
fn cuda_bf16_matches_diffusers() {
    let device = match Device::cuda(0) {
        Ok(d) => d,
        Err(e) => {
            kiln_runtime::cuda::skip_gpu_test("the CUDA UNet parity test", &format!("no CUDA device ({e})"));
            return;
        }
    };
    let mut items = Vec::new();
    for model in ["sd15", "sdxl", "sdxl_refiner", "sd15_inpaint", "ssd_1b"] {
        let ckpt = open_folder(model);
        let cpu = run_cases(&format!("{model} cpu bf16"), model, &ckpt, DType::BF16, Device::Cpu);
        let cuda = run_cases(&format!("{model} cuda bf16"), model, &ckpt, DType::BF16, device);
        for (k, ((cpu, cpu_err), (cuda, cuda_err))) in cpu.iter().zip(&cuda).enumerate() {
            items.push(half_tolerance::Measured {
                what: format!("{model} case {k} bf16"),
                cpu: *cpu_err,
                cuda: *cuda_err,
                cuda_vs_cpu: rel_l2(cuda, cpu),
            });
        }
    }
    half_tolerance::check_all(&items, CUDA_VS_CPU_BF16);
}

/// A copy of the tiny SD 1.5 UNet folder in `dir` whose tensor `name` has one row fewer.
fn folder_with_bad_tensor(dir: &Path, name: &str) {
    let src = tiny("sd15/unet");
    let dst = dir.join("unet");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(src.join("config.json"), dst.join("config.json")).unwrap();
    let file = "diffusion_pytorch_model.safetensors";
    let bytes = std::fs::read(src.join(file)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = Vec::new();
    for (n, view) in st.tensors() {
        let (mut shape, mut data) = (view.shape().to_vec(), view.data().to_vec());
        if n == name {
            let row_bytes = data.len() / shape[0];
            shape[0] -= 1;
            data.truncate(data.len() - row_bytes);
        }
        tensors.push((n, view.dtype(), shape, data));
    }
    assert!(tensors.iter().any(|(n, ..)| n == name), "{name} not in the tiny SD 1.5 UNet");
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, dt, shape, data)| {
            (n.clone(), safetensors::tensor::TensorView::new(*dt, shape.clone(), data).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dst.join(file)).unwrap();
}

#[test]
fn a_weight_of_the_wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "up_blocks.2.attentions.1.transformer_blocks.0.ff.net.2.weight";
    folder_with_bad_tensor(dir.path(), bad);
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    match UNet::load(&ckpt, DType::F32, Device::Cpu) {
        Err(ModelError::WeightShape { name, expected, got }) => {
            assert_eq!(name, format!("unet.{bad}"));
            assert_eq!(got[0] + 1, expected[0], "{expected:?} vs {got:?}");
        }
        other => panic!("expected WeightShape for {bad}, got {:?}", other.map(|_| ())),
    }
}

fn expect_input_error(result: Result<Tensor, ModelError>, what: &str) {
    match result {
        Err(ModelError::Input { model: "unet", message }) => eprintln!("{what}: {message}"),
        other => panic!("{what}: expected ModelError::Input, got {:?}", other.map(|t| t.dims().to_vec())),
    }
}

/// Non-constant inputs from a fixed-seed LCG (the errors come before any arithmetic).
fn random(shape: &[usize], seed: u32) -> Tensor {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect();
    Tensor::from_f32(data, shape, DType::F32, Device::Cpu).unwrap()
}

#[test]
fn inputs_that_do_not_fit_are_typed_errors() {
    let unet = UNet::load(&open_folder("sd15"), DType::F32, Device::Cpu).unwrap();
    let ctx = random(&[1, 77, 32], 1);
    let t = [500.0];
    let x = random(&[1, 16, 16, 4], 2);
    expect_input_error(unet.forward(&random(&[1, 16, 16, 9], 2), &t, &ctx, None), "9 channels into SD 1.5");
    expect_input_error(unet.forward(&random(&[1, 12, 16], 2), &t, &ctx, None), "rank 3 latents");
    expect_input_error(unet.forward(&random(&[1, 12, 16, 4], 2), &t, &ctx, None), "height 12 (not / 8)");
    expect_input_error(unet.forward(&random(&[1, 16, 20, 4], 2), &t, &ctx, None), "width 20 (not / 8)");
    expect_input_error(unet.forward(&x, &[1.0, 2.0], &ctx, None), "2 timesteps for batch 1");
    expect_input_error(unet.forward(&x, &t, &random(&[1, 77, 48], 3), None), "context 48 wide");
    expect_input_error(unet.forward(&x, &t, &random(&[2, 77, 32], 3), None), "context batch 2");
    let extra = AddedConditioning { text_embeds: random(&[1, 32], 4), time_ids: vec![1024.0; 6] };
    expect_input_error(unet.forward(&x, &t, &ctx, Some(&extra)), "added conditioning into SD 1.5");

    let sdxl = UNet::load(&open_folder("sdxl"), DType::F32, Device::Cpu).unwrap();
    let ctx = random(&[1, 77, 48], 6);
    expect_input_error(sdxl.forward(&x, &t, &ctx, None), "SDXL without added conditioning");
    let five = AddedConditioning { text_embeds: random(&[1, 32], 7), time_ids: vec![1024.0; 5] };
    expect_input_error(sdxl.forward(&x, &t, &ctx, Some(&five)), "5 time ids into SDXL base");
    let wide = AddedConditioning { text_embeds: random(&[1, 40], 7), time_ids: vec![1024.0; 6] };
    expect_input_error(sdxl.forward(&x, &t, &ctx, Some(&wide)), "pooled embedding 40 wide");
}

/// Every published UNet layout (sparse full-size files from the key manifests: names, shapes,
/// dtypes of the real checkpoints) loads with the shapes its config implies. Heavy (up to ~10 GB
/// of memory for SDXL), hence ignored by default:
/// `cargo test -p kiln-pipeline --test unet_parity -- --ignored full_size`.
#[test]
#[ignore = "needs ~10 GB of memory: run with --ignored"]
fn full_size_published_layouts_load() {
    use kiln_runtime::checkpoint::manifest::Manifest;
    let manifests = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/manifests"));
    for family in ["sd15", "sd15_inpaint", "sdxl_base", "sdxl_refiner", "sdxl_inpaint", "ssd_1b"] {
        for format in ["single_file", "diffusers"] {
            let dir = tempfile::tempdir().unwrap();
            let manifest = Manifest::read(&manifests.join(format!("{family}.{format}.json"))).unwrap();
            let path = manifest.materialize(dir.path()).unwrap();
            let ckpt = Checkpoint::open(&path).unwrap_or_else(|e| panic!("{family} {format}: {e}"));
            assert_eq!(ckpt.family().id(), family);
            let unet = UNet::load(&ckpt, DType::BF16, Device::Cpu)
                .unwrap_or_else(|e| panic!("{family} {format}: {e}"));
            eprintln!("{family} {format}: UNet loads ({:?} channels)", unet.config().block_out_channels);
        }
    }
}
