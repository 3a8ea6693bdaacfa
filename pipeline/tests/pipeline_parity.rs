//! End-to-end parity with diffusers' Stable Diffusion pipelines: kiln's [`Engine`] renders each
//! case of `fixtures/pipeline/cases.json` on the CPU in f32, from the diffusers folder and from
//! the single file where the model has one, and every pixel must be within 2/255 of the image
//! diffusers made for the same job and seed.
//!
//! Expected images come from `tools/make_pipeline_fixtures.py` (its header says how: one
//! diffusers call per seed, `torch.Generator("cpu").manual_seed(seed)`, 8-bit PNGs). The cases
//! cover text-to-image (SD 1.5 and SDXL, several samplers, with and without negative prompts,
//! prompt_2, clip_skip, cfg_scale 1, a two-seed job, a non-square size), img2img, and inpainting
//! with regular and 9-channel UNets. A last test stacks the cases that share a [`BatchKey`] into
//! one render call and checks it gives what one call per case gives.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ::image::{GrayImage, RgbImage};
use kiln_pipeline::generate::{BatchKey, Engine, InitImage, Job};
use kiln_pipeline::samplers::SamplerName;
use kiln_runtime::checkpoint::{Checkpoint, Component, Family, OpenOptions};
use kiln_runtime::{DType, Device};
use serde::Deserialize;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
/// The largest difference allowed from diffusers' 8-bit images, per channel value.
const TOLERANCE: u8 = 2;
/// Batch and one-call-per-job renders may differ by float rounding only.
const BATCH_TOLERANCE: u8 = 1;

fn pipeline_dir() -> PathBuf {
    Path::new(FIXTURES).join("pipeline")
}

#[derive(Deserialize)]
struct CasesFile {
    cases: Vec<Case>,
}

/// One fixture case: a job, the checkpoints to render it from, the expected image per seed.
#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    checkpoints: Vec<String>,
    job: JobSpec,
    expected: Vec<String>,
}

#[derive(Deserialize)]
struct JobSpec {
    prompt: String,
    prompt_2: Option<String>,
    negative_prompt: Option<String>,
    negative_prompt_2: Option<String>,
    clip_skip: Option<usize>,
    cfg_scale: f32,
    steps: usize,
    sampler: String,
    seeds: Vec<u32>,
    width: usize,
    height: usize,
    init: Option<InitSpec>,
}

#[derive(Deserialize)]
struct InitSpec {
    image: String,
    strength: f64,
    mask: Option<String>,
}

impl Case {
    fn is_txt2img(&self) -> bool {
        self.job.init.is_none()
    }

    fn is_img2img(&self) -> bool {
        self.job.init.as_ref().is_some_and(|i| i.mask.is_none())
    }

    fn is_inpaint(&self) -> bool {
        self.job.init.as_ref().is_some_and(|i| i.mask.is_some())
    }

    fn is_inpainting_model(&self) -> bool {
        self.model.ends_with("_inpaint")
    }

    fn job(&self) -> Job {
        let spec = &self.job;
        let init = spec.init.as_ref().map(|i| InitImage {
            image: read_rgb(&i.image),
            strength: i.strength,
            mask: i.mask.as_deref().map(read_gray),
            full_res: None,
        });
        Job {
            prompt: spec.prompt.clone(),
            prompt_2: spec.prompt_2.clone(),
            negative_prompt: spec.negative_prompt.clone(),
            negative_prompt_2: spec.negative_prompt_2.clone(),
            clip_skip: spec.clip_skip,
            cfg_scale: spec.cfg_scale,
            steps: spec.steps,
            sampler: spec.sampler.parse::<SamplerName>().unwrap_or_else(|e| panic!("{}: {e}", self.name)),
            seeds: spec.seeds.clone(),
            width: spec.width,
            height: spec.height,
            init,
            refiner_at: None,
            control: None,
            ip: None,
        }
    }

    fn expected(&self) -> Vec<RgbImage> {
        self.expected.iter().map(|f| read_rgb(f)).collect()
    }
}

fn cases() -> Vec<Case> {
    let path = pipeline_dir().join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: CasesFile = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(file.cases.len() >= 20, "cases.json holds {} cases", file.cases.len());
    file.cases
}

fn read_rgb(name: &str) -> RgbImage {
    let path = pipeline_dir().join(name);
    ::image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

fn read_gray(name: &str) -> GrayImage {
    let path = pipeline_dir().join(name);
    ::image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_luma8()
}

/// Loaded engines (or why one failed to load) by checkpoint path relative to fixtures/, so each
/// loads once per test, all with one dtype on one device.
struct Engines {
    dtype: DType,
    device: Device,
    loaded: HashMap<String, Result<Engine, String>>,
}

impl Default for Engines {
    /// f32 on the CPU: the configuration that must match diffusers within [`TOLERANCE`].
    fn default() -> Self {
        Engines::on(DType::F32, Device::Cpu)
    }
}

impl Engines {
    fn on(dtype: DType, device: Device) -> Self {
        Engines { dtype, device, loaded: HashMap::new() }
    }

    fn get(&mut self, checkpoint: &str) -> Result<&Engine, String> {
        let (dtype, device) = (self.dtype, self.device);
        self.loaded
            .entry(checkpoint.to_string())
            .or_insert_with(|| {
                let path = Path::new(FIXTURES).join(checkpoint);
                // A tiny single file takes its sizes from the folder of the same name.
                let options = match checkpoint.strip_suffix(".safetensors") {
                    Some(stem) => OpenOptions::default().config_dir(Path::new(FIXTURES).join(stem)),
                    None => OpenOptions::default(),
                };
                Engine::load_with(&path, &options, dtype, device)
                    .map_err(|e| format!("load {checkpoint}: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// How two images differ: the largest channel difference and where the first too-large one is.
struct Diff {
    max: u8,
    over: usize,
    first_over: Option<(u32, u32, usize, u8, u8)>,
    mean: f64,
}

impl Diff {
    fn of(got: &RgbImage, want: &RgbImage, tolerance: u8) -> Diff {
        let mut diff = Diff { max: 0, over: 0, first_over: None, mean: 0.0 };
        let mut sum = 0u64;
        for (y, x, c) in (0..want.height())
            .flat_map(|y| (0..want.width()).flat_map(move |x| (0..3).map(move |c| (y, x, c))))
        {
            let (g, w) = (got.get_pixel(x, y)[c], want.get_pixel(x, y)[c]);
            let d = g.abs_diff(w);
            sum += u64::from(d);
            diff.max = diff.max.max(d);
            if d > tolerance {
                diff.over += 1;
                diff.first_over.get_or_insert((x, y, c, g, w));
            }
        }
        diff.mean = sum as f64 / (want.len() as f64);
        diff
    }

    fn describe(&self) -> String {
        let mut s = format!("max diff {}/255, mean {:.3}", self.max, self.mean);
        if let Some((x, y, c, g, w)) = self.first_over {
            let _ = write!(
                s,
                ", {} values over; first at (x {x}, y {y}, channel {c}): kiln {g}, want {w}",
                self.over
            );
        }
        s
    }
}

/// Compares each image of `got` with `want`; appends one line per mismatch to `failures`.
fn compare(label: &str, got: &[RgbImage], want: &[RgbImage], tolerance: u8, failures: &mut Vec<String>) {
    if got.len() != want.len() {
        failures.push(format!("{label}: {} images, want {}", got.len(), want.len()));
        return;
    }
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        if g.dimensions() != w.dimensions() {
            failures.push(format!("{label} image {k}: {:?}, want {:?}", g.dimensions(), w.dimensions()));
            continue;
        }
        let diff = Diff::of(g, w, tolerance);
        eprintln!("{label} image {k}: {}", diff.describe());
        if diff.max > tolerance {
            failures.push(format!("{label} image {k}: {}", diff.describe()));
        }
    }
}

/// Renders `jobs` in one call, checking the progress callback ends at its total.
fn render(engine: &Engine, jobs: &[Job], max_batch: usize) -> Result<Vec<Vec<RgbImage>>, String> {
    let mut calls = Vec::new();
    let out = engine
        .render(jobs, max_batch, &mut |done, total| calls.push((done, total)))
        .map_err(|e| e.to_string())?;
    if out.len() != jobs.len() {
        return Err(format!("{} image lists for {} jobs", out.len(), jobs.len()));
    }
    match calls.last() {
        Some(&(done, total)) if done == total && calls.windows(2).all(|w| w[0].0 <= w[1].0) => Ok(out),
        _ => Err(format!("progress calls {calls:?} do not climb to their total")),
    }
}

/// With `KILN_PARITY_DUMP=DIR`, saves kiln's images as `DIR/<case>__<checkpoint>_<k>.png` to
/// study a mismatch next to diffusers' image.
fn dump(case: &str, checkpoint: &str, images: &[RgbImage]) {
    let Some(dir) = std::env::var_os("KILN_PARITY_DUMP") else { return };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let checkpoint = checkpoint.replace(['/', '.'], "_");
    for (k, image) in images.iter().enumerate() {
        let path = dir.join(format!("{case}__{checkpoint}_{k}.png"));
        image.save(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Renders every case `select` picks from each of its checkpoints and compares with diffusers.
fn check_cases(select: impl Fn(&Case) -> bool) {
    let cases: Vec<Case> = cases().into_iter().filter(|c| select(c)).collect();
    assert!(!cases.is_empty(), "no case selected");
    let mut engines = Engines::default();
    let mut failures = Vec::new();
    for case in &cases {
        let job = case.job();
        let want = case.expected();
        for checkpoint in &case.checkpoints {
            let label = format!("{} [{checkpoint}]", case.name);
            match engines.get(checkpoint).and_then(|e| render(e, std::slice::from_ref(&job), 4)) {
                Ok(mut got) => {
                    let got = got.remove(0);
                    dump(&case.name, checkpoint, &got);
                    compare(&label, &got, &want, TOLERANCE, &mut failures)
                }
                Err(e) => failures.push(format!("{label}: render failed: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches with diffusers:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn sd15_text_to_image_matches_diffusers() {
    check_cases(|c| c.model == "sd15" && c.is_txt2img());
}

#[test]
fn sdxl_text_to_image_matches_diffusers() {
    check_cases(|c| c.model == "sdxl" && c.is_txt2img());
}

#[test]
fn ssd_1b_text_to_image_matches_diffusers() {
    // Its img2img case runs in img2img_matches_diffusers.
    check_cases(|c| c.model == "ssd_1b" && c.is_txt2img());
}

#[test]
fn img2img_matches_diffusers() {
    check_cases(Case::is_img2img);
}

#[test]
fn inpainting_with_regular_unets_matches_diffusers() {
    check_cases(|c| c.is_inpaint() && !c.is_inpainting_model());
}

#[test]
fn inpainting_with_nine_channel_unets_matches_diffusers() {
    check_cases(|c| c.is_inpaint() && c.is_inpainting_model());
}

#[test]
fn the_cases_cover_every_mode_and_several_samplers() {
    let cases = cases();
    let count = |f: &dyn Fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count();
    assert!(count(&|c| c.is_txt2img() && c.model == "sd15") >= 4);
    assert!(count(&|c| c.is_txt2img() && c.model == "sdxl") >= 4);
    assert!(count(&Case::is_img2img) >= 2);
    assert!(count(&|c| c.is_inpaint() && !c.is_inpainting_model()) >= 2);
    assert!(count(&|c| c.is_inpaint() && c.is_inpainting_model()) >= 2);
    assert!(count(&|c| c.job.seeds.len() > 1) >= 1);
    assert!(count(&|c| c.job.cfg_scale <= 1.0) >= 1);
    assert!(count(&|c| c.job.clip_skip.is_some()) >= 1);
    assert!(count(&|c| c.checkpoints.len() == 2) >= 10, "single files must be covered too");
    let mut samplers: Vec<&str> = cases.iter().map(|c| c.job.sampler.as_str()).collect();
    samplers.sort();
    samplers.dedup();
    assert!(samplers.len() >= 5, "{samplers:?}");
}

/// Every sampler that draws noise at each step has an end-to-end case against diffusers' pipeline
/// (step-level parity alone would not catch a wrong noise stream); DPM_PLUS_PLUS_SDE_KARRAS, whose
/// noise is a torchsde Brownian tree per image, on both families and with two seeds in one job.
#[test]
fn every_sampler_with_step_noise_has_an_end_to_end_case() {
    let cases = cases();
    for name in SamplerName::ALL.into_iter().filter(|n| n.stochastic()) {
        let of = |c: &&Case| c.job.sampler == name.as_str();
        assert!(cases.iter().any(|c| of(&c)), "no pipeline case for {}", name.as_str());
    }
    let sde = |c: &&Case| c.job.sampler == SamplerName::DPM_PLUS_PLUS_SDE_KARRAS.as_str();
    for model in ["sd15", "sdxl"] {
        assert!(cases.iter().filter(sde).any(|c| c.model == model), "DPM++ SDE on {model}");
    }
    assert!(cases.iter().filter(sde).any(|c| c.job.seeds.len() > 1), "DPM++ SDE with two seeds");
}

/// The 9-channel fixture folders (symlinks to the tiny components) open as complete inpainting
/// checkpoints.
#[test]
fn inpainting_folders_open_as_complete_inpainting_checkpoints() {
    for (name, family, encoders) in [
        ("sd15_inpaint", Family::Sd15Inpaint, &[Component::TextEncoder][..]),
        ("sdxl_inpaint", Family::SdxlInpaint, &[Component::TextEncoder, Component::TextEncoder2][..]),
    ] {
        let path = pipeline_dir().join("models").join(name);
        let ckpt = Checkpoint::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(ckpt.family(), family, "{name}");
        assert!(ckpt.missing_components().is_empty(), "{name}: missing {:?}", ckpt.missing_components());
        for &c in [Component::Unet, Component::Vae].iter().chain(encoders) {
            assert!(ckpt.component(c).is_some(), "{name}: no {c:?}");
        }
        assert_eq!(ckpt.unet_config().in_channels, 9, "{name}");
    }
}

/// Cases sharing model and [`BatchKey`] stacked into one render call (and into calls of at
/// most two images) give what one call per case gives, and still match diffusers.
#[test]
fn stacked_jobs_render_as_one_call_per_job() {
    let cases = cases();
    let mut groups: Vec<((String, BatchKey), Vec<&Case>)> = Vec::new();
    for case in &cases {
        let key = (case.checkpoints[0].clone(), case.job().batch_key());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(case),
            None => groups.push((key, vec![case])),
        }
    }
    groups.retain(|(_, members)| members.len() >= 2);
    assert!(groups.len() >= 2, "the fixtures need at least two stackable groups");
    for (what, kind) in [("img2img", Case::is_img2img as fn(&Case) -> bool), ("inpainting", Case::is_inpaint)]
    {
        assert!(groups.iter().any(|(_, m)| kind(m[0])), "no stackable {what} group");
    }
    let mut engines = Engines::default();
    let mut failures = Vec::new();
    for ((checkpoint, _), members) in &groups {
        let jobs: Vec<Job> = members.iter().map(|c| c.job()).collect();
        let engine = engines.get(checkpoint).unwrap_or_else(|e| panic!("{e}"));
        let singles: Vec<Vec<RgbImage>> = jobs
            .iter()
            .map(|j| {
                render(engine, std::slice::from_ref(j), 1)
                    .unwrap_or_else(|e| panic!("{checkpoint}: {e}"))
                    .remove(0)
            })
            .collect();
        let images: usize = jobs.iter().map(Job::images).sum();
        for max_batch in [images, 2] {
            let names: Vec<&str> = members.iter().map(|c| c.name.as_str()).collect();
            match render(engine, &jobs, max_batch) {
                Ok(stacked) => {
                    for ((case, got), single) in members.iter().zip(&stacked).zip(&singles) {
                        let label = format!("{} stacked with {names:?}, max_batch {max_batch}", case.name);
                        let (vs_single, vs_diffusers) =
                            (format!("{label} vs one call"), format!("{label} vs diffusers"));
                        compare(&vs_single, got, single, BATCH_TOLERANCE, &mut failures);
                        compare(&vs_diffusers, got, &case.expected(), TOLERANCE, &mut failures);
                    }
                }
                Err(e) => failures.push(format!("{names:?} max_batch {max_batch}: render failed: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// The same cases rendered in bf16 on the CUDA device (in CI: the software GPU, which runs the
/// real kernels) and in bf16 on the CPU, each compared with diffusers' images and with each
/// other.
///
/// Tolerance: bf16 keeps 8 significant bits, so every activation carries a relative error of up
/// to 2^-9, and a denoising loop feeds each step's rounding into the next; the tiny random-weight
/// models amplify it further. A bf16 image cannot be held to the f32 path's 2/255, and how far
/// it lands depends on the case, so the bound is measured in the same run: kiln's CPU backend,
/// the reference backend, renders the case in bf16 too (bf16 storage, f32 accumulation, as the
/// CUDA kernels), and the CUDA image may be at most a little further from diffusers' than that:
/// mean channel difference <= max([`MEAN_FLOOR`], [`MEAN_FACTOR`] x the CPU's) and largest
/// channel difference <= max([`MAX_FLOOR`], [`MAX_FACTOR`] x the CPU's). The largest difference
/// is a single pixel where the two backends' rounding sent the trajectory a slightly different
/// way, hence the wider factor. A broken kernel (a wrong tile, a missed mask) moves the mean by
/// tens of levels.
///
/// Measured on the software GPU (21 images of the cases below): CPU bf16 vs diffusers max 6..22,
/// mean 0.59..2.92; CUDA vs diffusers max 6..21, mean 0.59..2.42; CUDA / CPU ratios: means
/// 0.77..1.21, maxima 0.71..1.33. On an H200 (2026-12-04, the 11 inpainting images, NVRTC and
/// cuBLASLt 13): means 0.84..1.26, maxima 0.75..1.44. Since the CPU's bf16 products run on AMX
/// tiles where the CPU has them (other f32 summation orders; 2026-12-05, software GPU, 34
/// images): CPU bf16 vs diffusers max 5..23, mean 0.56..2.47; ratios means 0.82..1.24 and
/// maxima 0.71..1.43 except one image (SDXL inpainting, blend, full strength) where the CPU
/// landed unusually close (mean 0.89, max 10) and CUDA, unchanged, at its usual distance (mean
/// 1.38, max 16): ratios 1.55 and 1.60. Hence [`MEAN_FACTOR`] 1.7 and [`MAX_FACTOR`] 1.75 (the
/// single largest difference is the noisier statistic). CUDA vs CPU bf16 directly: max 4..23, mean
/// 0.43..2.96, as far apart as either is from diffusers (two bf16 trajectories whose rounding
/// flips differ drift apart independently), so that difference is printed, not bounded.
#[cfg(feature = "cuda")]
mod cuda_bf16 {
    use super::*;

    /// The mean channel difference (8-bit levels) always allowed.
    const MEAN_FLOOR: f64 = 1.0;
    /// How much larger than the CPU bf16 render's the CUDA render's mean difference may be.
    const MEAN_FACTOR: f64 = 1.7;
    /// The largest channel difference always allowed.
    const MAX_FLOOR: u8 = 8;
    /// How much larger than the CPU bf16 render's the CUDA render's largest difference may be.
    const MAX_FACTOR: f64 = 1.75;

    fn gpu() -> Option<Device> {
        match Device::cuda(0) {
            Ok(d) => Some(d),
            Err(e) => {
                kiln_runtime::cuda::skip_gpu_test("CUDA pipeline parity", &format!("no CUDA device ({e})"));
                None
            }
        }
    }

    /// Renders the selected cases from their diffusers folder in bf16 on the GPU and on the CPU
    /// and holds each GPU image to the bounds above.
    fn check_bf16(mut select: impl FnMut(&Case) -> bool) {
        let Some(device) = gpu() else { return };
        let cases: Vec<Case> = cases().into_iter().filter(|c| select(c)).collect();
        assert!(!cases.is_empty(), "no case selected");
        let (mut gpu_engines, mut cpu_engines) =
            (Engines::on(DType::BF16, device), Engines::on(DType::BF16, Device::Cpu));
        let mut failures = Vec::new();
        for case in &cases {
            let job = case.job();
            let checkpoint = &case.checkpoints[0];
            let label = format!("{} [{checkpoint}] bf16", case.name);
            let got = match gpu_engines.get(checkpoint).and_then(|e| render(e, std::slice::from_ref(&job), 4))
            {
                Ok(mut got) => got.remove(0),
                Err(e) => {
                    failures.push(format!("{label}: the CUDA render failed: {e}"));
                    continue;
                }
            };
            let cpu = cpu_engines
                .get(checkpoint)
                .and_then(|e| render(e, std::slice::from_ref(&job), 4))
                .unwrap_or_else(|e| panic!("{label}: the CPU render failed: {e}"))
                .remove(0);
            let want = case.expected();
            assert_eq!((got.len(), cpu.len()), (want.len(), want.len()), "{label}: images");
            for (k, ((g, c), w)) in got.iter().zip(&cpu).zip(&want).enumerate() {
                let reference = Diff::of(c, w, u8::MAX);
                let max = (f64::from(MAX_FLOOR)).max(MAX_FACTOR * f64::from(reference.max)).floor() as u8;
                let mean = MEAN_FLOOR.max(MEAN_FACTOR * reference.mean);
                let diff = Diff::of(g, w, max);
                let between = Diff::of(g, c, u8::MAX);
                eprintln!(
                    "{label} image {k}: cpu vs diffusers {}; cuda vs diffusers {}; cuda vs cpu {}",
                    reference.describe(),
                    diff.describe(),
                    between.describe()
                );
                if diff.max > max || diff.mean > mean {
                    failures.push(format!(
                        "{label} image {k}: cuda vs diffusers {} over max {max} / mean {mean:.3} (cpu bf16 vs diffusers {})",
                        diff.describe(),
                        reference.describe()
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{} bf16 mismatches:\n{}", failures.len(), failures.join("\n"));
    }

    /// One text-to-image case per model and sampler family, the img2img cases and both kinds of
    /// inpainting: every mode of the engine through the CUDA backend.
    #[test]
    fn cuda_bf16_text_to_image_matches_cpu_and_diffusers() {
        let mut seen = Vec::new();
        check_bf16(|c| {
            let key = (c.model.clone(), c.job.sampler.clone());
            let first = c.is_txt2img() && !seen.contains(&key);
            if first {
                seen.push(key);
            }
            first
        });
    }

    #[test]
    fn cuda_bf16_img2img_matches_cpu_and_diffusers() {
        check_bf16(Case::is_img2img);
    }

    #[test]
    fn cuda_bf16_inpainting_matches_cpu_and_diffusers() {
        check_bf16(Case::is_inpaint);
    }
}
