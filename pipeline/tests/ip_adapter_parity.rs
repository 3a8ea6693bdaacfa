//! IP-Adapter renders against diffusers' `load_ip_adapter` + `set_ip_adapter_scale`
//! (`tools/make_ip_adapter_fixtures.py`): the tiny SDXL with a tiny IP-Adapter and CLIP vision
//! tower; `full`, InstantStyle's `style` and `composition` blocks, a mask, img2img, and with a
//! ControlNet.

mod asset_common;

use std::sync::Arc;

use ::image::RgbImage;
use asset_common::{JobSpec, TOLERANCE, fixture, max_diff, read_cases};
use kiln_pipeline::generate::{Control, Engine, GenerateError, IpImage, IpMethod, Job};
use kiln_pipeline::image::canny::canny_rgb;
use kiln_pipeline::image::clip::clip_crop;
use kiln_runtime::{DType, Device};
use serde::Deserialize;

#[derive(Deserialize)]
struct IpSpec {
    image: String,
    scale: f64,
    method: String,
    mask: Option<String>,
}

#[derive(Deserialize)]
struct ControlSpec {
    image: String,
    scale: f64,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    job: JobSpec,
    ip_adapter: IpSpec,
    control: Option<ControlSpec>,
    expected: Vec<String>,
}

fn method(name: &str) -> IpMethod {
    match name {
        "full" => IpMethod::Full,
        "style" => IpMethod::Style,
        "composition" => IpMethod::Composition,
        other => panic!("unknown method {other}"),
    }
}

impl Case {
    fn job(&self) -> Job {
        let ip = &self.ip_adapter;
        let image = clip_crop(&::image::open(fixture("ip_adapter").join(&ip.image)).unwrap(), 224);
        let mask = ip.mask.as_ref().map(|m| ::image::open(fixture("ip_adapter").join(m)).unwrap().to_luma8());
        let control = self.control.as_ref().map(|c| {
            let source = ::image::open(fixture("controlnet").join(&c.image)).unwrap().to_rgb8();
            Control { image: canny_rgb(&source, 100.0, 200.0), scale: c.scale, end: 1.0 }
        });
        Job {
            ip: Some(IpImage { image, scale: ip.scale, method: method(&ip.method), mask }),
            control,
            ..self.job.job()
        }
    }

    fn expected(&self) -> Vec<RgbImage> {
        self.expected
            .iter()
            .map(|f| ::image::open(fixture("ip_adapter").join(f)).unwrap().to_rgb8())
            .collect()
    }
}

/// The tiny SDXL with the tiny IP-Adapter (and the tiny SDXL ControlNet) attached.
fn engine(dtype: DType, device: Device) -> Engine {
    let mut engine = Engine::load(&fixture("tiny/sdxl"), dtype, device).unwrap();
    let ip = engine
        .load_ip_adapter(
            &fixture("ip_adapter/ip-adapter_tiny_sdxl.safetensors"),
            &fixture("ip_adapter/image_encoder"),
        )
        .unwrap();
    engine.set_ip_adapter(Some(Arc::new(ip))).unwrap();
    let net = engine.load_controlnet(&fixture("controlnet/sdxl_canny"), None).unwrap();
    engine.set_controlnet(Some(Arc::new(net))).unwrap();
    engine
}

fn render(engine: &Engine, jobs: &[Job]) -> Vec<Vec<RgbImage>> {
    engine.render(jobs, 4, &mut |_, _| {}).unwrap()
}

#[test]
fn ip_adapter_renders_match_diffusers() {
    let cases: Vec<Case> = read_cases("ip_adapter/cases.json");
    assert!(cases.len() >= 6);
    let engine = engine(DType::F32, Device::Cpu);
    for case in &cases {
        let got = render(&engine, &[case.job()]).remove(0);
        for (k, (g, w)) in got.iter().zip(case.expected()).enumerate() {
            let d = max_diff(g, &w);
            let over: usize = g.as_raw().iter().zip(w.as_raw()).filter(|(a, b)| a.abs_diff(**b) > 1).count();
            let mean = g.as_raw().iter().zip(w.as_raw()).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>()
                / g.as_raw().len() as f64;
            eprintln!(
                "{} image {k}: max diff {d}/255, mean {mean:.3}, {over} values off by more than 1",
                case.name
            );
            if let Ok(dir) = std::env::var("KILN_DUMP_DIR") {
                g.save(std::path::Path::new(&dir).join(format!("{}_{k}.png", case.name))).unwrap();
            }
            assert!(d <= TOLERANCE, "{} image {k}: {d}/255 from diffusers", case.name);
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    /// The adapter on the GPU (bf16): the full, style and masked cases and the one with a
    /// ControlNet, held to the CUDA pipeline parity bounds ([`asset_common::cuda_bound`]) from
    /// diffusers' f32 image given the CPU bf16 render's distance.
    #[test]
    fn cuda_ip_adapter_renders_as_diffusers_does() {
        let gpu = match Device::cuda(0) {
            Ok(device) => device,
            Err(e) => {
                return kiln_runtime::cuda::skip_gpu_test(
                    "CUDA IP-Adapter",
                    &format!("no CUDA device ({e})"),
                );
            }
        };
        let cases: Vec<Case> = read_cases("ip_adapter/cases.json");
        let (cpu, cuda) = (engine(DType::BF16, Device::Cpu), engine(DType::BF16, gpu));
        for case in cases
            .iter()
            .filter(|c| ["full_euler_a", "style", "masked", "with_controlnet"].contains(&c.name.as_str()))
        {
            let job = case.job();
            let (c, g) = (render(&cpu, &[job.clone()]), render(&cuda, &[job]));
            asset_common::check_cuda(&case.name, &c[0][0], &g[0][0], &case.expected()[0]);
        }
    }
}

#[test]
fn jobs_with_different_images_scales_methods_and_masks_batch_as_they_render_alone() {
    let cases: Vec<Case> = read_cases("ip_adapter/cases.json");
    let engine = engine(DType::F32, Device::Cpu);
    // Euler, 6 steps, text-to-image, no ControlNet: style, masked, and the style case again with
    // the composition method, another image and seed.
    let style = cases.iter().find(|c| c.name == "style").unwrap().job();
    let masked = cases.iter().find(|c| c.name == "masked").unwrap().job();
    let mut composition = style.clone();
    composition.seeds = vec![909];
    let ip = composition.ip.as_mut().unwrap();
    ip.method = IpMethod::Composition;
    ip.scale = 0.4;
    ip.image = clip_crop(&::image::open(fixture("ip_adapter/style_a.png")).unwrap(), 224);
    let jobs = [style, masked, composition];
    let together = render(&engine, &jobs);
    for (job, batched) in jobs.iter().zip(&together) {
        let alone = render(&engine, std::slice::from_ref(job)).remove(0);
        assert!(&alone == batched, "a batched image differs from the image rendered alone");
    }
}

#[test]
fn mismatched_adapters_and_jobs_are_refused() {
    let cases: Vec<Case> = read_cases("ip_adapter/cases.json");
    let job = cases[0].job();
    // No adapter attached.
    let plain = Engine::load(&fixture("tiny/sdxl"), DType::F32, Device::Cpu).unwrap();
    assert!(matches!(
        plain.render(std::slice::from_ref(&job), 4, &mut |_, _| {}),
        Err(GenerateError::Input { field: "ip_adapter_image", .. })
    ));
    // An SDXL adapter on SD 1.5: other widths and context.
    let mut sd15 = Engine::load(&fixture("tiny/sd15"), DType::F32, Device::Cpu).unwrap();
    let ip = sd15
        .load_ip_adapter(
            &fixture("ip_adapter/ip-adapter_tiny_sdxl.safetensors"),
            &fixture("ip_adapter/image_encoder"),
        )
        .unwrap();
    match sd15.set_ip_adapter(Some(Arc::new(ip))) {
        Err(GenerateError::Input { field: "ip_adapter", message }) => {
            assert!(message.contains("context"), "{message}")
        }
        other => panic!("an SDXL adapter attached to SD 1.5: {other:?}"),
    }
    // A missing image encoder, and a file that is not an adapter.
    let missing = plain.load_ip_adapter(
        &fixture("ip_adapter/ip-adapter_tiny_sdxl.safetensors"),
        &fixture("ip_adapter/none"),
    );
    assert!(missing.is_err());
    let not_adapter = plain
        .load_ip_adapter(&fixture("controlnet/sdxl_canny.safetensors"), &fixture("ip_adapter/image_encoder"));
    assert!(not_adapter.unwrap_err().to_string().contains("not an IP-Adapter"));
    // A mask of another size.
    let engine = engine(DType::F32, Device::Cpu);
    let mut job = cases.iter().find(|c| c.name == "masked").unwrap().job();
    job.ip.as_mut().unwrap().mask = Some(::image::GrayImage::new(32, 64));
    assert!(matches!(
        engine.render(&[job], 4, &mut |_, _| {}),
        Err(GenerateError::Input { field: "ip_adapter_mask_image", .. })
    ));
}
