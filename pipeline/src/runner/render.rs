//! One group: decode its init and mask images, render its jobs in one engine call, and give each
//! request its outcome (images or error record), in input order. A stop (a signal) during the
//! engine call ends it before its next UNet call; the group's requests then have no outcome.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use ::image::RgbImage;

use super::models::{Models, Ready, Unready};
use super::prepare::Prepared;
use super::records;
use super::renderer::{Batch, Done, Outcome};
use crate::generate::{Control, Engine, GenerateError, InitImage, IpImage, Job};
use crate::image::canny::canny_rgb;
use crate::image::clip::clip_crop;
use crate::image::full_res::FullRes;
use crate::image::{decode_base64, fill_masked, to_mask, to_rgb};
use crate::request::RequestError;
use crate::request::control::ControlRequest;
use crate::request::ip::IpRequest;

/// The render stopped (at `stop`'s request) before the group had its outcomes.
pub(super) struct Stopped {
    /// The group's requests.
    pub left: usize,
    /// What loading the group's assets said.
    pub log: Vec<String>,
}

/// Renders one group of requests with equal keys (see [`Prepared::key`]), unless `stop` ends the
/// render first. `report(group_images, done, total)` follows the engine call.
pub(super) fn group(
    items: Vec<Prepared>,
    models: &mut Models,
    batch_size: usize,
    report: &mut dyn FnMut(usize, usize, usize),
    stop: &AtomicBool,
) -> Result<Batch, Stopped> {
    let Some(first) = items.first() else { return Ok(Batch { results: Vec::new(), log: Vec::new() }) };
    let (model, assets) = (first.model.clone(), first.assets.clone());
    let refine = items.iter().any(|p| p.resolved.job.refiner_at.is_some());
    let Ready { engine, warnings: lora_warnings, log } = match models.engine(&model, &assets, refine) {
        Ok(ready) => ready,
        Err(Unready::Checkpoint(reason)) => {
            let results = items.into_iter().map(|p| (p, Outcome::Unusable(reason.clone()))).collect();
            return Ok(Batch { results, log: Vec::new() });
        }
        Err(Unready::Asset { field, reason }) => {
            let error = records::field_error(field, &reason);
            let results = items.into_iter().map(|p| (p, Outcome::Failed(error.clone()))).collect();
            return Ok(Batch { results, log: Vec::new() });
        }
    };

    let mut results: Vec<(Prepared, Outcome)> = Vec::new();
    let mut ready: Vec<(Prepared, Job)> = Vec::new();
    for mut p in items {
        match job_with_images(&p) {
            Ok(job) => {
                if has_blank_full_res_mask(&job) {
                    p.warnings.push(BLANK_MASK.to_string());
                }
                ready.push((p, job))
            }
            Err(error) => results.push((p, Outcome::Failed(error))),
        }
    }
    let ready_images: usize = ready.iter().map(|(_, job)| job.images()).sum();
    let jobs: Vec<Job> = ready.iter().map(|(_, job)| job.clone()).collect();
    let started = Instant::now();
    let Ok(rendered) = render_jobs(engine, &jobs, batch_size, report, stop) else {
        return Err(Stopped { left: ready.len() + results.len(), log });
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;

    for ((p, job), result) in ready.into_iter().zip(rendered) {
        let outcome = match result {
            Ok(pictures) => {
                let share = if ready_images == 0 { 0.0 } else { job.images() as f64 / ready_images as f64 };
                let prompt_warnings = prompt_warnings(engine, &job);
                let mut warnings = lora_warnings.clone();
                warnings.extend(p.warnings.iter().cloned());
                warnings.extend(prompt_warnings.iter().cloned());
                let prediction_time_ms = elapsed_ms * share;
                Outcome::Done(Done { job, pictures, prediction_time_ms, warnings, prompt_warnings })
            }
            Err(error) => Outcome::Failed(error),
        };
        results.push((p, outcome));
    }
    Ok(Batch { results, log })
}

/// The resolved job with its init image (resized; filled under the mask for outpainting) and
/// mask decoded; an image that does not decode is an error on its field.
fn job_with_images(p: &Prepared) -> Result<Job, RequestError> {
    let resolved = &p.resolved;
    let mut job = resolved.job.clone();
    let (w, h) = (job.width as u32, job.height as u32);
    if let Some(control) = &resolved.control {
        job.control = Some(control_image(control, w, h)?);
    }
    if let Some(ip) = &resolved.ip {
        job.ip = Some(ip_image(ip, w, h)?);
    }
    let Some(init_b64) = &resolved.init_image else { return Ok(job) };
    // Each decoded image is dropped once converted, so one request holds one at a time.
    let mut image = to_rgb(&decode_field(init_b64, "init_image")?, w, h);
    let mask = match &resolved.mask_image {
        None => None,
        Some(mask_b64) => Some(to_mask(&decode_field(mask_b64, "mask_image")?, w, h)),
    };
    if let (true, Some(mask)) = (resolved.outpainting, &mask) {
        image = fill_masked(&image, mask);
    }
    job.init = Some(InitImage { image, strength: resolved.strength, mask, full_res: resolved.full_res });
    Ok(job)
}

/// A ControlNet request's control: its image decoded and Lanczos-resized to the output size
/// (as init images are), then, with `controlnet_preprocess`, turned into the Canny map OctoAI's
/// example makes (`cv2.Canny(image, 100, 200)` replicated to three channels). Other ControlNets
/// need models to preprocess (depth, pose): asking kiln to is an error on the field.
pub(super) fn control_image(
    control: &ControlRequest,
    width: u32,
    height: u32,
) -> Result<Control, RequestError> {
    if control.preprocess && !control.is_canny() {
        return Err(records::field_error(
            "controlnet_preprocess",
            format!(
                "kiln makes only Canny maps; ControlNet {:?} needs its own preprocessor (depth, pose, ...): send the \
                 preprocessed map as controlnet_image with controlnet_preprocess false",
                control.name()
            ),
        ));
    }
    let image = to_rgb(&decode_field(&control.image, "controlnet_image")?, width, height);
    let image = if control.preprocess { canny_rgb(&image, CANNY_LOW, CANNY_HIGH) } else { image };
    Ok(Control { image, scale: control.scale, end: control.early_stop.unwrap_or(1.0) })
}

/// An IP-Adapter request's images: the reference image as the CLIP encoder takes it (the
/// 224 x 224 crop `CLIPImageProcessor` makes) and the mask at the output size, as diffusers'
/// `IPAdapterMaskProcessor` makes it (resized like `mask_image`, then luma).
pub(super) fn ip_image(ip: &IpRequest, width: u32, height: u32) -> Result<IpImage, RequestError> {
    let image = clip_crop(&decode_field(&ip.image, "ip_adapter_image")?, CLIP_SIZE);
    let mask = match &ip.mask {
        None => None,
        Some(b64) => Some(to_mask(&decode_field(b64, "ip_adapter_mask_image")?, width, height)),
    };
    Ok(IpImage { image, scale: ip.scale, method: ip.method, mask })
}

/// The published IP-Adapter image encoders' input side (ViT-H/14 and ViT-bigG/14).
const CLIP_SIZE: u32 = 224;

/// OctoAI's Canny thresholds (its example's `cv2.Canny(image, 100, 200)`).
const CANNY_LOW: f64 = 100.0;
const CANNY_HIGH: f64 = 200.0;

/// The warning of an `inpaint_full_res` request whose mask leaves nothing to inpaint.
const BLANK_MASK: &str = "inpaint_full_res: the mask (after A1111's blur of 4 pixels) is blank, so there is \
                          nothing to inpaint: the init image is returned unchanged";

/// Whether the job inpaints at full resolution with a mask that has no region to crop.
fn has_blank_full_res_mask(job: &Job) -> bool {
    job.init.as_ref().is_some_and(|init| match (init.full_res, &init.mask) {
        (Some(padding), Some(mask)) => FullRes::plan(mask, padding).is_none(),
        _ => false,
    })
}

/// A request image (base64) decoded; one that does not decode is an error on `field`.
pub(super) fn decode_field(b64: &str, field: &str) -> Result<::image::DynamicImage, RequestError> {
    decode_base64(b64).map_err(|e| records::field_error(field, format!("cannot decode the image: {e}")))
}

/// The engine stopped at `stop`'s request ([`GenerateError::Stopped`]).
struct EngineStopped;

/// Each job's images, or its error record. When the group's call fails, each job is tried
/// alone, so that one job the engine rejects does not fail the others.
fn render_jobs(
    engine: &Engine,
    jobs: &[Job],
    max_batch: usize,
    report: &mut dyn FnMut(usize, usize, usize),
    stop: &AtomicBool,
) -> Result<Vec<Result<Vec<RgbImage>, RequestError>>, EngineStopped> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let total_images: usize = jobs.iter().map(Job::images).sum();
    let mut whole = |done, total| report(total_images, done, total);
    match engine.render_until(jobs, max_batch, &mut whole, stop) {
        Ok(images) if images.len() == jobs.len() => return Ok(images.into_iter().map(Ok).collect()),
        Ok(images) => {
            let error = format!("the engine returned {} results for {} jobs", images.len(), jobs.len());
            return Ok(jobs
                .iter()
                .map(|_| Err(RequestError::body(error.clone(), records::RENDER_FAILED)))
                .collect());
        }
        Err(GenerateError::Stopped) => return Err(EngineStopped),
        Err(error) if jobs.len() == 1 => return Ok(vec![Err(records::render_failed(&error))]),
        Err(_) => {}
    }
    jobs.iter()
        .map(|job| {
            let mut alone = |done, total| report(job.images(), done, total);
            match engine.render_until(std::slice::from_ref(job), max_batch, &mut alone, stop) {
                Ok(mut images) if images.len() == 1 => Ok(Ok(images.remove(0))),
                Ok(_) => Ok(Err(RequestError::body("the engine returned no images", records::RENDER_FAILED))),
                Err(GenerateError::Stopped) => Err(EngineStopped),
                Err(error) => Ok(Err(records::render_failed(&error))),
            }
        })
        .collect()
}

/// The job's prompt tokens dropped past the family's limit, as warnings. (Tokenizing again is
/// cheap; the render has already succeeded, so the prompts parse.)
fn prompt_warnings(engine: &Engine, job: &Job) -> Vec<String> {
    engine.dropped_tokens(job).unwrap_or_default().iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::encode;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use kiln_runtime::checkpoint::Family;

    /// A seeded noise PNG (never constant), base64.
    fn noise_png(width: u32, height: u32, seed: u32) -> String {
        let mut state = seed.max(1);
        let pixels: Vec<u8> = (0..width * height * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect();
        let image = RgbImage::from_raw(width, height, pixels).unwrap();
        STANDARD.encode(encode(&image, crate::image::ImageEncoding::Png).unwrap())
    }

    fn pending(fields: &str) -> Prepared {
        let text = format!(r#"{{"prompt": "a boat", "width": 512, "height": 512, "seed": 5{fields}}}"#);
        let line = crate::request::parse_line(&text, 1);
        let resolved = line.request.unwrap().resolve(Family::Sd15).unwrap();
        Prepared {
            id: line.id,
            model: "m".into(),
            assets: Default::default(),
            resolved,
            warnings: Vec::new(),
            without_refiner: false,
        }
    }

    #[test]
    fn the_planning_key_is_the_key_of_the_job_with_its_images() {
        let (init, mask) = (noise_png(24, 16, 3), noise_png(8, 8, 4));
        for fields in [
            String::new(),
            format!(r#", "init_image": "{init}", "strength": 0.5"#),
            format!(r#", "init_image": "{init}", "mask_image": "{mask}""#),
            format!(r#", "init_image": "{init}", "mask_image": "{mask}", "outpainting": true"#),
        ] {
            let p = pending(&fields);
            let job = job_with_images(&p).unwrap();
            assert_eq!(p.key().2, job.batch_key(), "{fields}");
            assert_eq!(p.key().0, p.model);
            if let Some(init) = &job.init {
                assert_eq!(init.image.dimensions(), (512, 512), "resized to the job's size");
                assert_eq!(
                    init.mask.as_ref().map(|m| m.dimensions()),
                    p.resolved.mask_image.as_ref().map(|_| (512, 512))
                );
            }
        }
        assert_ne!(pending("").key(), pending(&format!(r#", "init_image": "{init}""#)).key());
    }

    #[test]
    fn outpainting_fills_the_masked_area_before_rendering() {
        let (init, mask) = (noise_png(16, 16, 7), noise_png(16, 16, 8));
        let inpaint =
            job_with_images(&pending(&format!(r#", "init_image": "{init}", "mask_image": "{mask}""#)));
        let outpaint = job_with_images(&pending(&format!(
            r#", "init_image": "{init}", "mask_image": "{mask}", "outpainting": true"#
        )));
        let (inpaint, outpaint) = (inpaint.unwrap().init.unwrap(), outpaint.unwrap().init.unwrap());
        let mask = inpaint.mask.as_ref().unwrap();
        assert_eq!(outpaint.image, fill_masked(&inpaint.image, mask));
        assert_ne!(outpaint.image, inpaint.image, "the noise mask covers some pixels");
    }

    #[test]
    fn undecodable_images_are_errors_on_their_field() {
        let init = noise_png(8, 8, 9);
        let bad_init = job_with_images(&pending(r#", "init_image": "aGVsbG8=""#)).unwrap_err();
        assert_eq!(serde_json::to_value(&bad_init).unwrap()["detail"][0]["loc"][1], "init_image");
        let bad_mask =
            job_with_images(&pending(&format!(r#", "init_image": "{init}", "mask_image": "aGVsbG8=""#)))
                .unwrap_err();
        assert_eq!(serde_json::to_value(&bad_mask).unwrap()["detail"][0]["loc"][1], "mask_image");
    }
}
