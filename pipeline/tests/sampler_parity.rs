//! Sampler parity with diffusers: timesteps, sigmas, init_noise_sigma, img2img noising and every
//! step's output against `fixtures/samplers/<NAME>.json` (tools/make_sampler_fixtures.py), with
//! the stand-in model `eps = tanh(0.7 x) cos(t / 300) + 0.1 x` and the noise diffusers drew.
//!
//! Tolerance: |kiln - diffusers| <= 1e-5 * (1 + |diffusers|) per element (schedules 1e-6): the
//! schedule scalars are rounded differently (host f64/f32 math vs diffusers' float32 tensors).

#[cfg(feature = "cuda")]
mod half_tolerance;

use std::collections::VecDeque;

use kiln_pipeline::samplers::{
    self, NoiseSource, PredictionType, SamplerError, SamplerName, SchedulerConfig, img2img_begin,
};
use kiln_runtime::{DType, Device, Tensor};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

/// The samplers with a parity test below (all 21).
const IMPLEMENTED: [SamplerName; 21] = [
    SamplerName::DPM_PLUS_PLUS_SDE_KARRAS,
    SamplerName::DPM_SINGLE,
    SamplerName::UNI_PC,
    SamplerName::LCM,
    SamplerName::DPM_2,
    SamplerName::DPM_2_KARRAS,
    SamplerName::DPM_2_ANCESTRAL,
    SamplerName::DPM_2_ANCESTRAL_KARRAS,
    SamplerName::LMS,
    SamplerName::KLMS,
    SamplerName::PNDM,
    SamplerName::DDPM,
    SamplerName::K_EULER,
    SamplerName::HEUN,
    SamplerName::K_HEUN,
    SamplerName::K_EULER_ANCESTRAL,
    SamplerName::DDIM,
    SamplerName::DPM_SOLVER_MULTISTEP,
    SamplerName::DPM_PLUS_PLUS_2M_KARRAS,
    SamplerName::DPM_PLUS_PLUS_2M_SDE,
    SamplerName::DPM_PLUS_PLUS_2M_SDE_KARRAS,
];

/// Replays the noise diffusers drew, in order.
struct Replay(VecDeque<Vec<f32>>);

impl NoiseSource for Replay {
    fn normal(&mut self, dims: &[usize], dtype: DType, device: Device) -> kiln_runtime::Result<Tensor> {
        let data = self.0.pop_front().expect("the sampler drew more noise than diffusers did");
        assert_eq!(data.len(), dims.iter().product::<usize>(), "noise of another size than diffusers drew");
        Tensor::from_f32(data, dims, dtype, device)
    }
}

fn config(name: &str) -> SchedulerConfig {
    let file = |family: &str| format!("{FIXTURES}/tiny/{family}/scheduler/scheduler_config.json");
    match name {
        "sd15" => SchedulerConfig::from_file(file("sd15").as_ref()).unwrap(),
        "sdxl" => SchedulerConfig::from_file(file("sdxl").as_ref()).unwrap(),
        "sdxl_v" => SchedulerConfig {
            prediction_type: PredictionType::VPrediction,
            ..SchedulerConfig::from_file(file("sdxl").as_ref()).unwrap()
        },
        other => panic!("unknown fixture config {other}"),
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn floats64(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

/// Largest |a - b| / (1 + |b|).
fn max_err<A: Into<f64> + Copy, B: Into<f64> + Copy>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(&x, &y)| (x.into() - y.into()).abs() / (1.0 + y.into().abs())).fold(0.0, f64::max)
}

/// The stand-in UNet, computed on the host (this test's only device-to-host copy).
fn stand_in_model(x: &Tensor, t: f64) -> Tensor {
    let c = (t / 300.0).cos() as f32;
    let data = x.to_vec_f32().unwrap().iter().map(|&v| (0.7f32 * v).tanh() * c + 0.1f32 * v).collect();
    Tensor::from_f32(data, x.dims(), x.dtype(), x.device()).unwrap()
}

fn check_sampler(name: SamplerName) {
    let tol = 1e-5;
    // 1e-5 on the CPU for every sampler: the SDE ones replay diffusers' noise exactly, so they
    // meet the deterministic tolerance too.
    let mut worst = 0.0f64;
    for step in run_sampler(name, Device::Cpu, DType::F32) {
        let e = step.err();
        assert!(e <= tol, "{}: err {e:e}", step.label);
        worst = worst.max(e);
    }
    eprintln!("{name} (F32): worst step error {worst:e} (tolerance {tol:e})");
}

/// One output of a sampler (add_noise, a step or the final latents) next to diffusers'.
struct Step {
    label: String,
    got: Vec<f32>,
    want: Vec<f32>,
}

impl Step {
    fn err(&self) -> f64 {
        max_err(&self.got, &self.want)
    }
}

/// Runs every fixture case of `name` with latents as `dtype` on `device` (checking the
/// schedules, which are host math, within 1e-6): every output next to diffusers'.
fn run_sampler(name: SamplerName, device: Device, dtype: DType) -> Vec<Step> {
    let path = format!("{FIXTURES}/samplers/{name}.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let dims: Vec<usize> =
        doc["shape_nhwc"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let tensor = |v: &Value| Tensor::from_f32(floats(v), &dims, dtype, device).unwrap();
    let mut out = Vec::new();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 18, "3 configs x (4 step counts + 2 strengths)");
    for case in cases {
        let steps = case["steps"].as_u64().unwrap() as usize;
        let strength = case["strength"].as_f64();
        let label = format!("{name} {} steps={steps} strength={strength:?}", case["config"]);
        let config = config(case["config"].as_str().unwrap());
        if let Some(err) = case.get("error") {
            assert!(
                samplers::build(name, &config, steps, strength).is_err(),
                "{label}: diffusers refuses ({err})"
            );
            continue;
        }
        let mut sampler = samplers::build(name, &config, steps, strength).unwrap();
        let timesteps = floats64(&case["timesteps"]);
        let e = max_err(sampler.timesteps(), &timesteps);
        assert!(e <= 1e-6, "{label}: timesteps {:?} vs diffusers {timesteps:?}", sampler.timesteps());
        if let (Some(ours), Some(theirs)) = (sampler.sigmas(), case["sigmas"].as_array()) {
            let theirs: Vec<f64> = theirs.iter().map(|x| x.as_f64().unwrap()).collect();
            let e = max_err(ours, &theirs);
            assert!(e <= 1e-6, "{label}: sigmas err {e:e}\n{ours:?}\nvs diffusers\n{theirs:?}");
        }
        let init = case["init_noise_sigma"].as_f64().unwrap();
        assert!(max_err(&[sampler.init_noise_sigma()], &[init]) <= 1e-6, "{label}: init_noise_sigma");

        let mut latents = match strength {
            None => tensor(&case["initial"]).affine(sampler.init_noise_sigma() as f32, 0.0).unwrap(),
            Some(_) => {
                let noised = sampler
                    .add_noise(&tensor(&case["image_latents"]), &tensor(&case["add_noise_noise"]), 0)
                    .unwrap();
                out.push(Step {
                    label: format!("{label}: add_noise"),
                    got: noised.to_vec_f32().unwrap(),
                    want: floats(&case["noised"]),
                });
                noised
            }
        };
        let mut noise = Replay(case["noise"].as_array().unwrap().iter().map(floats).collect());
        let outputs = case["outputs"].as_array().unwrap();
        let calls: Vec<f64> = sampler.timesteps().to_vec();
        assert!(outputs.is_empty() || outputs.len() == calls.len(), "{label}: recorded outputs per call");
        for (call, &t) in calls.iter().enumerate() {
            let x_in = sampler.scale_model_input(&latents, call).unwrap();
            let eps = stand_in_model(&x_in, t);
            latents = sampler.step(&eps, call, &latents, &mut noise).unwrap();
            if let Some(expected) = outputs.get(call) {
                out.push(Step {
                    label: format!("{label}: call {call}"),
                    got: latents.to_vec_f32().unwrap(),
                    want: floats(expected),
                });
            }
        }
        out.push(Step {
            label: format!("{label}: final"),
            got: latents.to_vec_f32().unwrap(),
            want: floats(&case["final"]),
        });
        assert!(noise.0.is_empty(), "{label}: diffusers drew {} more noise tensors", noise.0.len());
    }
    out
}

#[test]
fn euler_matches_diffusers() {
    check_sampler(SamplerName::K_EULER);
}

#[test]
fn euler_ancestral_matches_diffusers() {
    check_sampler(SamplerName::K_EULER_ANCESTRAL);
}

#[test]
fn heun_matches_diffusers() {
    check_sampler(SamplerName::HEUN);
    check_sampler(SamplerName::K_HEUN);
}

#[test]
fn ddpm_matches_diffusers() {
    check_sampler(SamplerName::DDPM);
}

#[test]
fn pndm_matches_diffusers() {
    check_sampler(SamplerName::PNDM);
}

#[test]
fn lms_matches_diffusers() {
    check_sampler(SamplerName::LMS);
    check_sampler(SamplerName::KLMS);
}

#[test]
fn dpm2_matches_diffusers() {
    check_sampler(SamplerName::DPM_2);
    check_sampler(SamplerName::DPM_2_KARRAS);
}

#[test]
fn dpm2_ancestral_matches_diffusers() {
    check_sampler(SamplerName::DPM_2_ANCESTRAL);
    check_sampler(SamplerName::DPM_2_ANCESTRAL_KARRAS);
}

#[test]
fn lcm_matches_diffusers() {
    check_sampler(SamplerName::LCM);
}

#[test]
fn unipc_matches_diffusers() {
    check_sampler(SamplerName::UNI_PC);
}

#[test]
fn dpm_single_matches_diffusers() {
    check_sampler(SamplerName::DPM_SINGLE);
}

#[test]
fn dpm_plus_plus_sde_karras_matches_diffusers() {
    check_sampler(SamplerName::DPM_PLUS_PLUS_SDE_KARRAS);
}

#[test]
fn ddim_matches_diffusers() {
    check_sampler(SamplerName::DDIM);
}

#[test]
fn dpm_solver_multistep_matches_diffusers() {
    check_sampler(SamplerName::DPM_SOLVER_MULTISTEP);
}

#[test]
fn dpm_plus_plus_2m_karras_matches_diffusers() {
    check_sampler(SamplerName::DPM_PLUS_PLUS_2M_KARRAS);
}

#[test]
fn dpm_plus_plus_2m_sde_matches_diffusers() {
    check_sampler(SamplerName::DPM_PLUS_PLUS_2M_SDE);
}

#[test]
fn dpm_plus_plus_2m_sde_karras_matches_diffusers() {
    check_sampler(SamplerName::DPM_PLUS_PLUS_2M_SDE_KARRAS);
}

/// Every name of OctoAI's API schema (copied into the fixture by the tools script) parses to the sampler of that name.
#[test]
fn every_octoai_name_parses() {
    let text = std::fs::read_to_string(format!("{FIXTURES}/samplers/octoai_names.json")).unwrap();
    let names: Value = serde_json::from_str(&text).unwrap();
    let names = names.as_array().unwrap();
    assert_eq!(names.len(), 21);
    for name in names {
        let name = name.as_str().unwrap();
        let parsed: SamplerName = name.parse().unwrap();
        assert_eq!(parsed.as_str(), name);
    }
}

#[test]
fn unknown_name_lists_the_allowed_ones() {
    let err = "EULER".parse::<SamplerName>().unwrap_err();
    let SamplerError::UnknownName { name, allowed } = &err else { panic!("{err}") };
    assert_eq!(name, "EULER");
    for n in SamplerName::ALL {
        assert!(allowed.contains(n.as_str()), "{allowed} lacks {n}");
    }
}

/// Every name builds the sampler of that name, for both checkpoint families.
#[test]
fn every_sampler_builds() {
    for config in [SchedulerConfig::sd15(), SchedulerConfig::sdxl()] {
        for name in SamplerName::ALL {
            let sampler = samplers::build(name, &config, 20, None).unwrap();
            assert_eq!(sampler.name(), name);
            assert!(IMPLEMENTED.contains(&name), "{name} has no parity test");
        }
    }
}

/// diffusers' get_timesteps: floor(steps * strength) steps run, times the order in calls.
#[test]
fn strength_selects_the_first_step() {
    assert_eq!(img2img_begin(20, 0.3, 1).unwrap(), 14);
    assert_eq!(img2img_begin(20, 0.8, 1).unwrap(), 4);
    assert_eq!(img2img_begin(20, 0.8, 2).unwrap(), 8);
    assert_eq!(img2img_begin(20, 1.0, 1).unwrap(), 0);
    assert!(matches!(img2img_begin(4, 0.2, 1), Err(SamplerError::Steps(_))));
    assert!(matches!(img2img_begin(4, 1.5, 1), Err(SamplerError::Steps(_))));
    let sampler = samplers::build(SamplerName::K_EULER, &SchedulerConfig::sdxl(), 20, Some(0.3)).unwrap();
    assert_eq!(sampler.timesteps().len(), 6);
}

#[test]
fn steps_out_of_order_are_refused() {
    let mut sampler =
        samplers::build(SamplerName::DPM_SOLVER_MULTISTEP, &SchedulerConfig::sd15(), 4, None).unwrap();
    let x = Tensor::from_f32(vec![0.5; 16], &[1, 2, 2, 4], DType::F32, Device::Cpu).unwrap();
    let mut noise = Replay(VecDeque::new());
    let err = sampler.step(&x, 1, &x, &mut noise).unwrap_err();
    assert!(matches!(err, SamplerError::OutOfOrder { expected: 0, got: 1 }), "{err}");
    assert!(matches!(sampler.scale_model_input(&x, 4), Err(SamplerError::Steps(_))));
    assert!(matches!(
        samplers::build(SamplerName::K_EULER, &SchedulerConfig::sd15(), 0, None),
        Err(SamplerError::Steps(_))
    ));
}

/// The tiny checkpoints' scheduler files read as SD 1.5's and SDXL's published defaults.
#[test]
fn checkpoint_scheduler_configs_read_as_the_published_ones() {
    assert_eq!(config("sd15"), SchedulerConfig::sd15());
    assert_eq!(config("sdxl"), SchedulerConfig::sdxl());
    let err = SchedulerConfig::from_json(r#"{"beta_schedule": "squaredcos_cap_v2"}"#).unwrap_err();
    assert!(matches!(err, SamplerError::Config { key: "beta_schedule", .. }), "{err}");
    let err = SchedulerConfig::from_json(r#"{"prediction_type": "sample"}"#).unwrap_err();
    assert!(matches!(err, SamplerError::Config { key: "prediction_type", .. }), "{err}");
}

/// The largest difference allowed between the CUDA and the CPU backend's f16 latents (the
/// error measure of this file, |cuda - cpu| / (1 + |cpu|) per element): see the measurements
/// on [`samplers_match_diffusers_f16_cuda`].
#[cfg(feature = "cuda")]
const CUDA_VS_CPU_F16: f64 = 2e-3;

/// On a GPU, latents in f16: every output of every sampler (add_noise, each step, the final
/// latents), bounded as tests/half_tolerance explains against the same sampler with f16 latents
/// on the CPU: CUDA vs diffusers <= max(1e-2, 1.25 x kiln's CPU f16 vs diffusers), and CUDA vs
/// CPU f16 <= [`CUDA_VS_CPU_F16`]. One line per case (its final latents) is printed, and every
/// output over a bound.
///
/// Measured on the software GPU (885 outputs of the 21 samplers): CPU f16 vs diffusers up to
/// 1.45e-2 (the SDE samplers over 20-30 steps; DPM++ SDE Karras on SD 1.5, 30 steps: 1.24e-2),
/// CUDA exactly the same, and CUDA vs CPU f16 0 on every output: the samplers are elementwise
/// f32 arithmetic on the same f16 values, rounded to f16 at the same points, so the two backends
/// agree bit for bit. [`CUDA_VS_CPU_F16`] = 2e-3 is two f16 ulps (an ulp is < 2^-10 of
/// 1 + |x|): room for a rounding flip (an FMA contracted on one backend only) and its spread
/// over a step, nothing more.
#[cfg(feature = "cuda")]
#[test]
fn samplers_match_diffusers_f16_cuda() {
    let device = match Device::cuda(0) {
        Ok(d) => d,
        Err(e) => {
            kiln_runtime::cuda::skip_gpu_test(
                "the CUDA sampler parity test",
                &format!("no CUDA device ({e})"),
            );
            return;
        }
    };
    let mut items = Vec::new();
    for name in SamplerName::ALL {
        let cpu = run_sampler(name, Device::Cpu, DType::F16);
        let cuda = run_sampler(name, device, DType::F16);
        assert_eq!(cpu.len(), cuda.len(), "{name}");
        for (c, g) in cpu.iter().zip(&cuda) {
            assert_eq!(c.label, g.label);
            let m = half_tolerance::Measured {
                what: format!("{} (F16)", g.label),
                cpu: c.err(),
                cuda: g.err(),
                cuda_vs_cpu: max_err(&g.got, &c.got),
            };
            if g.label.ends_with(": final") {
                eprintln!("{}", m.describe());
            }
            items.push(m);
        }
    }
    half_tolerance::check_all_printing(&items, CUDA_VS_CPU_F16, false);
}
