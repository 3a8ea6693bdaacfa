//! Helpers of the asset parity tests (LoRA, textual inversion, VAE swap): a fixture case's job,
//! one render, how far two images are apart, and the bounds of the CUDA checks.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use ::image::RgbImage;
use kiln_pipeline::generate::{Engine, InitImage, Job};
use kiln_pipeline::samplers::SamplerName;
use serde::Deserialize;

/// The repository's fixtures.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
/// The largest difference allowed from diffusers' 8-bit images on the CPU in f32.
pub const TOLERANCE: u8 = 2;
/// On CUDA (bf16): the largest channel difference from diffusers' f32 image always allowed...
pub const MAX_FLOOR: u8 = 8;
/// ...or this much more than the CPU bf16 render's, as the CUDA pipeline parity tests allow.
pub const MAX_FACTOR: f64 = 1.5;

/// `path` under the fixtures.
pub fn fixture(path: &str) -> PathBuf {
    Path::new(FIXTURES).join(path)
}

/// The `cases` list of a fixture script's `cases.json` (`path` under the fixtures).
pub fn read_cases<T: serde::de::DeserializeOwned>(path: &str) -> Vec<T> {
    #[derive(Deserialize)]
    struct CasesFile<T> {
        cases: Vec<T>,
    }
    let text = std::fs::read_to_string(fixture(path)).unwrap();
    serde_json::from_str::<CasesFile<T>>(&text).unwrap().cases
}

/// A job as the fixture scripts write it (`tools/make_pipeline_fixtures.py`'s `case`).
#[derive(Deserialize)]
pub struct JobSpec {
    prompt: String,
    negative_prompt: Option<String>,
    cfg_scale: f32,
    steps: usize,
    sampler: String,
    seeds: Vec<u32>,
    width: usize,
    height: usize,
    #[serde(default)]
    init: Option<InitSpec>,
}

/// An img2img start image (in the case's folder), strength and inpainting mask.
#[derive(Deserialize)]
struct InitSpec {
    image: String,
    strength: f64,
    #[serde(default)]
    mask: Option<String>,
}

impl JobSpec {
    /// The job, its images in `fixtures/pipeline/`.
    pub fn job(&self) -> Job {
        self.job_in("pipeline")
    }

    /// The job, its images in `fixtures/{folder}/`.
    pub fn job_in(&self, folder: &str) -> Job {
        let init = self.init.as_ref().map(|i| InitImage {
            image: ::image::open(fixture(folder).join(&i.image)).unwrap().to_rgb8(),
            strength: i.strength,
            mask: i.mask.as_ref().map(|m| ::image::open(fixture(folder).join(m)).unwrap().to_luma8()),
            full_res: None,
        });
        Job {
            prompt: self.prompt.clone(),
            prompt_2: None,
            negative_prompt: self.negative_prompt.clone(),
            negative_prompt_2: None,
            clip_skip: None,
            cfg_scale: self.cfg_scale,
            steps: self.steps,
            sampler: self.sampler.parse::<SamplerName>().unwrap(),
            seeds: self.seeds.clone(),
            width: self.width,
            height: self.height,
            init,
            refiner_at: None,
            control: None,
            ip: None,
        }
    }
}

/// The first image of `job` rendered alone.
pub fn render(engine: &Engine, job: &Job) -> RgbImage {
    engine.render(std::slice::from_ref(job), 4, &mut |_, _| {}).unwrap().remove(0).remove(0)
}

/// The largest channel difference between two images.
pub fn max_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

/// The largest difference from diffusers a GPU bf16 render may have, given the CPU bf16
/// render's.
pub fn cuda_bound(cpu_diff: u8) -> u8 {
    MAX_FLOOR.max((MAX_FACTOR * f64::from(cpu_diff)).ceil() as u8)
}

/// A GPU bf16 render held to [`cuda_bound`] from diffusers' f32 image `want`, given the CPU bf16
/// render's distance; both distances are printed.
pub fn check_cuda(label: &str, cpu: &RgbImage, gpu: &RgbImage, want: &RgbImage) {
    let (cpu_diff, gpu_diff) = (max_diff(cpu, want), max_diff(gpu, want));
    let bound = cuda_bound(cpu_diff);
    eprintln!("{label}: bf16 CPU {cpu_diff}/255, GPU {gpu_diff}/255 from diffusers (bound {bound})");
    assert!(gpu_diff <= bound, "{label}: GPU {gpu_diff}/255, CPU bf16 {cpu_diff}/255");
}
