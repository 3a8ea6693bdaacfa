//! `inpaint_full_res` (A1111's "inpaint only masked"): the blurred mask's region with its
//! padding, grown to the output's aspect ratio, inpainted at the full output size and pasted
//! back through the blurred mask, equal within 2/255 to `tools/make_full_res_fixtures.py`
//! (A1111's steps in NumPy and PIL around diffusers' inpainting pipelines) on the CPU in f32:
//! SD 1.5 at padding 32 and 0, a mask at the image's edge, SDXL. A blank mask returns the init
//! image unchanged, for every seed.

mod asset_common;

use ::image::{GrayImage, RgbImage};
use asset_common::{JobSpec, TOLERANCE, fixture, max_diff, read_cases};
use kiln_pipeline::generate::{Engine, Job};
use kiln_pipeline::image::full_res::FullRes;
use kiln_runtime::{DType, Device};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    padding: u32,
    region: [u32; 4],
    job: JobSpec,
    expected: String,
}

impl Case {
    fn job(&self) -> Job {
        let mut job = self.job.job_in("full_res");
        job.init.as_mut().unwrap().full_res = Some(self.padding);
        job
    }
}

fn cases() -> Vec<Case> {
    read_cases("full_res/cases.json")
}

fn engine(model: &str) -> Engine {
    Engine::load(&fixture(&format!("tiny/{model}")), DType::F32, Device::Cpu).unwrap()
}

fn render(engine: &Engine, job: &Job) -> Vec<RgbImage> {
    engine.render(std::slice::from_ref(job), 4, &mut |_, _| {}).unwrap().remove(0)
}

#[test]
fn the_crop_region_is_a1111s() {
    for case in cases() {
        let init = case.job().init.unwrap();
        let plan = FullRes::plan(init.mask.as_ref().unwrap(), case.padding).unwrap();
        let r = plan.region;
        assert_eq!([r.x1, r.y1, r.x2, r.y2], case.region, "{}", case.name);
    }
}

#[test]
fn full_res_inpainting_matches_the_reference() {
    let mut failures = Vec::new();
    for case in cases() {
        let got = render(&engine(&case.model), &case.job()).remove(0);
        let want = ::image::open(fixture("full_res").join(&case.expected)).unwrap().to_rgb8();
        let diff = max_diff(&got, &want);
        eprintln!("{}: {diff}/255", case.name);
        if diff > TOLERANCE {
            failures.push(format!("{}: {diff}/255", case.name));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn outside_the_region_the_init_image_is_kept_and_a_blank_mask_changes_nothing() {
    let case = cases().into_iter().find(|c| c.name == "sd15_pad0").unwrap();
    let engine = engine("sd15");
    let mut job = case.job();
    let got = render(&engine, &job).remove(0);
    let init = job.init.as_ref().unwrap().image.clone();
    let [x1, y1, x2, y2] = case.region;
    for (x, y, p) in got.enumerate_pixels() {
        if x < x1 || x >= x2 || y < y1 || y >= y2 {
            assert_eq!(p, init.get_pixel(x, y), "({x}, {y}) is outside the region");
        }
    }
    job.seeds = vec![5, 6];
    job.init.as_mut().unwrap().mask = Some(GrayImage::new(init.width(), init.height()));
    let images = render(&engine, &job);
    assert_eq!(images.len(), 2);
    assert!(images.iter().all(|image| *image == init), "a blank mask returns the init image");
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    /// Mean channel difference of two images, in 8-bit levels.
    fn mean_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        let total: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
        total as f64 / a.as_raw().len() as f64
    }

    /// The crop inpainted on the GPU (bf16) against the reference, bounded by kiln's CPU bf16
    /// render of the same case as the CUDA pipeline parity tests bound theirs: mean difference
    /// <= max(1, 1.25 x the CPU's); largest <= max(8, 2 x the CPU's), wider than their 1.5
    /// because the crop is resampled twice (up into the inference frame, down when pasted), so
    /// a single pixel's bf16 drift lands on more output pixels. Measured on the software GPU:
    /// max 15 / 8 / 9 on the CPU, 25 / 8 / 10 on the GPU; means 0.008..0.035 on both.
    #[test]
    fn cuda_full_res_inpainting_matches_the_reference() {
        let gpu = match Device::cuda(0) {
            Ok(device) => device,
            Err(e) => {
                return kiln_runtime::cuda::skip_gpu_test(
                    "CUDA full-res inpainting",
                    &format!("no CUDA device ({e})"),
                );
            }
        };
        for case in cases().iter().filter(|c| c.model == "sd15") {
            let want = ::image::open(fixture("full_res").join(&case.expected)).unwrap().to_rgb8();
            let load = |device| Engine::load(&fixture("tiny/sd15"), DType::BF16, device).unwrap();
            let cpu = render(&load(Device::Cpu), &case.job()).remove(0);
            let got = render(&load(gpu), &case.job()).remove(0);
            let (cpu_max, gpu_max) = (max_diff(&cpu, &want), max_diff(&got, &want));
            let (cpu_mean, gpu_mean) = (mean_diff(&cpu, &want), mean_diff(&got, &want));
            let (max_bound, mean_bound) = (8.max(2 * cpu_max), (1.25 * cpu_mean).max(1.0));
            eprintln!(
                "{}: bf16 CPU max {cpu_max} mean {cpu_mean:.3}, GPU max {gpu_max} mean {gpu_mean:.3} (bounds {max_bound}, {mean_bound:.3})",
                case.name
            );
            assert!(gpu_max <= max_bound && gpu_mean <= mean_bound, "{}: GPU off the bounds", case.name);
        }
    }
}
