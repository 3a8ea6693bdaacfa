//! ControlNet renders against diffusers' ControlNet pipelines (`tools/make_controlnet_fixtures.py`):
//! the tiny SD 1.5 and SDXL models with tiny random ControlNets, text-to-image and img2img,
//! conditioning scale 0.5 and early stop 0.5, the control image a Canny map kiln makes itself.

mod asset_common;

use std::path::PathBuf;
use std::sync::Arc;

use ::image::RgbImage;
use asset_common::{JobSpec, TOLERANCE, fixture, max_diff, read_cases};
use kiln_pipeline::generate::{Control, Engine, GenerateError, Job};
use kiln_pipeline::image::canny::canny_rgb;
use kiln_runtime::{DType, Device};
use serde::Deserialize;

#[derive(Deserialize)]
struct ControlSpec {
    controlnet: String,
    image: String,
    preprocess: bool,
    scale: f64,
    early_stop: Option<f64>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    job: JobSpec,
    control: ControlSpec,
    expected: Vec<String>,
}

impl Case {
    fn job(&self) -> Job {
        let source = ::image::open(fixture("controlnet").join(&self.control.image)).unwrap().to_rgb8();
        let image = if self.control.preprocess { canny_rgb(&source, 100.0, 200.0) } else { source };
        let control =
            Control { image, scale: self.control.scale, end: self.control.early_stop.unwrap_or(1.0) };
        Job { control: Some(control), ..self.job.job() }
    }

    fn expected(&self) -> Vec<RgbImage> {
        self.expected
            .iter()
            .map(|f| ::image::open(fixture("controlnet").join(f)).unwrap().to_rgb8())
            .collect()
    }
}

/// The tiny model of `model` with the ControlNet at `path` attached (a single file described by
/// its folder's config.json).
fn engine(model: &str, path: PathBuf, dtype: DType, device: Device) -> Engine {
    let mut engine = Engine::load(&fixture(&format!("tiny/{model}")), dtype, device).unwrap();
    let config = path.extension().map(|_| path.with_extension(""));
    let net = engine.load_controlnet(&path, config.as_deref()).unwrap();
    engine.set_controlnet(Some(Arc::new(net))).unwrap();
    engine
}

fn folder(case: &Case) -> PathBuf {
    fixture("controlnet").join(&case.control.controlnet)
}

fn render(engine: &Engine, jobs: &[Job]) -> Vec<Vec<RgbImage>> {
    engine.render(jobs, 4, &mut |_, _| {}).unwrap()
}

#[test]
fn controlnet_renders_match_diffusers() {
    let cases: Vec<Case> = read_cases("controlnet/cases.json");
    assert!(cases.len() >= 6);
    for case in &cases {
        let engine = engine(&case.model, folder(case), DType::F32, Device::Cpu);
        let got = render(&engine, &[case.job()]).remove(0);
        for (k, (g, w)) in got.iter().zip(case.expected()).enumerate() {
            let d = max_diff(g, &w);
            eprintln!("{} image {k}: max diff {d}/255", case.name);
            assert!(d <= TOLERANCE, "{} image {k}: {d}/255 from diffusers", case.name);
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    /// The ControlNet on the GPU (bf16): one txt2img case per family and the scale / early-stop
    /// one, held to the CUDA pipeline parity bounds ([`asset_common::cuda_bound`]) from
    /// diffusers' f32 image given the CPU bf16 render's distance.
    #[test]
    fn cuda_controlnet_renders_as_diffusers_does() {
        let gpu = match Device::cuda(0) {
            Ok(device) => device,
            Err(e) => {
                return kiln_runtime::cuda::skip_gpu_test(
                    "CUDA ControlNet",
                    &format!("no CUDA device ({e})"),
                );
            }
        };
        let cases: Vec<Case> = read_cases("controlnet/cases.json");
        for case in cases.iter().filter(|c| ["sd15_scale_stop", "sdxl_euler_a"].contains(&c.name.as_str())) {
            let on = |device| render(&engine(&case.model, folder(case), DType::BF16, device), &[case.job()]);
            asset_common::check_cuda(&case.name, &on(Device::Cpu)[0][0], &on(gpu)[0][0], &case.expected()[0]);
        }
    }
}

#[test]
fn single_files_render_what_folders_render() {
    let cases: Vec<Case> = read_cases("controlnet/cases.json");
    for model in ["sd15", "sdxl"] {
        let case = cases.iter().find(|c| c.model == model).unwrap();
        let file = fixture("controlnet").join(format!("{}.safetensors", case.control.controlnet));
        let from_folder = render(&engine(model, folder(case), DType::F32, Device::Cpu), &[case.job()]);
        let from_file = render(&engine(model, file, DType::F32, Device::Cpu), &[case.job()]);
        assert!(from_folder == from_file, "{}: the single file renders differently", case.name);
    }
}

#[test]
fn jobs_with_different_controls_batch_as_they_render_alone() {
    let cases: Vec<Case> = read_cases("controlnet/cases.json");
    for model in ["sd15", "sdxl"] {
        let case = cases.iter().find(|c| c.model == model && c.job.job().init.is_none()).unwrap();
        let engine = engine(model, folder(case), DType::F32, Device::Cpu);
        let first = case.job();
        // Another control image, scale and end, another seed and prompt: one UNet batch.
        let other_image = ::image::open(fixture("controlnet/control_b.png")).unwrap().to_rgb8();
        let second = Job {
            prompt: "a quiet harbour at dawn".into(),
            seeds: vec![977],
            control: Some(Control { image: canny_rgb(&other_image, 100.0, 200.0), scale: 0.7, end: 0.4 }),
            ..first.clone()
        };
        let together = render(&engine, &[first.clone(), second.clone()]);
        let alone = [render(&engine, &[first]).remove(0), render(&engine, &[second]).remove(0)];
        assert!(
            together[0] == alone[0] && together[1] == alone[1],
            "{model}: batched images differ from alone"
        );
    }
}

#[test]
fn mismatched_controlnets_and_jobs_are_refused() {
    let cases: Vec<Case> = read_cases("controlnet/cases.json");
    let sd15 = cases.iter().find(|c| c.model == "sd15").unwrap();
    let mut engine = Engine::load(&fixture("tiny/sd15"), DType::F32, Device::Cpu).unwrap();
    // A control without a ControlNet attached.
    match engine.render(&[sd15.job()], 4, &mut |_, _| {}) {
        Err(GenerateError::Input { field: "controlnet", .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    // An SDXL ControlNet on SD 1.5.
    let sdxl_net = engine.load_controlnet(&fixture("controlnet/sdxl_canny"), None);
    match sdxl_net.map(|n| engine.set_controlnet(Some(Arc::new(n)))) {
        Ok(Err(GenerateError::Input { field: "controlnet", message })) => {
            assert!(message.contains("SDXL"), "{message}");
        }
        other => panic!("an SDXL ControlNet attached to SD 1.5: {:?}", other.map(|r| r.map(|_| ()))),
    }
    // A control image of another size, an early stop outside [0, 1].
    let net = engine.load_controlnet(&folder(sd15), None).unwrap();
    engine.set_controlnet(Some(Arc::new(net))).unwrap();
    let mut job = sd15.job();
    job.control.as_mut().unwrap().image = RgbImage::new(32, 64);
    assert!(matches!(
        engine.render(&[job], 4, &mut |_, _| {}),
        Err(GenerateError::Input { field: "controlnet_image", .. })
    ));
    let mut job = sd15.job();
    job.control.as_mut().unwrap().end = 1.5;
    assert!(matches!(
        engine.render(&[job], 4, &mut |_, _| {}),
        Err(GenerateError::Input { field: "controlnet_early_stop", .. })
    ));
}
