//! One group: decode its init and mask images, render its jobs in one engine call, and append
//! each request's response (images saved first) or error record, in input order. A stop (a
//! signal) during the engine call ends it before its next UNet call; the group's rendered
//! requests are then not journaled, so a rerun renders them.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use ::image::RgbImage;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::batch::Group;
use super::models::{Models, Ready, Unready};
use super::{Pending, RunError, RunOptions, Sink, image_path, records};
use crate::generate::{Control, Engine, GenerateError, InitImage, IpImage, Job};
use crate::image::canny::canny_rgb;
use crate::image::clip::clip_crop;
use crate::image::full_res::FullRes;
use crate::image::{decode_base64, encode, fill_masked, to_mask, to_rgb};
use crate::request::control::ControlRequest;
use crate::request::ip::IpRequest;
use crate::request::{ImageGeneration, RequestError, Response};

/// How a group ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GroupEnd {
    /// Every request has its record.
    Done,
    /// `stop` was set during the render: this many requests have no record.
    Stopped { left: usize },
}

/// Renders one group and writes its records, unless `stop` ends the render first.
pub(super) fn group(
    group: Group<Pending>,
    options: &RunOptions,
    models: &mut Models,
    sink: &mut Sink,
    stop: &AtomicBool,
) -> Result<GroupEnd, RunError> {
    let images = group.images;
    let Some(model) = group.items.first().map(|p| p.model.clone()) else { return Ok(GroupEnd::Done) };
    let assets = group.items.first().map(|p| p.assets.clone()).unwrap_or_default();
    let refine = group.items.iter().any(|p| p.resolved.job.refiner_at.is_some());
    let Ready { engine, warnings: lora_warnings, log } = match models.engine(&model, &assets, refine) {
        Ok(ready) => ready,
        Err(Unready::Checkpoint(reason)) => {
            for _ in &group.items {
                sink.unusable_checkpoint(&model, &reason);
            }
            sink.progress.finish_images(images);
            return Ok(GroupEnd::Done);
        }
        Err(Unready::Asset { field, reason }) => {
            for p in &group.items {
                sink.fail(p.line, &p.id, records::field_error(field, &reason))?;
            }
            sink.progress.finish_images(images);
            return Ok(GroupEnd::Done);
        }
    };
    for message in &log {
        sink.progress.message(message);
    }

    let mut ready: Vec<(Pending, Job)> = Vec::new();
    for mut p in group.items {
        match job_with_images(&p) {
            Ok(job) => {
                if has_blank_full_res_mask(&job) {
                    p.warnings.push(BLANK_MASK.to_string());
                }
                ready.push((p, job))
            }
            Err(error) => sink.fail(p.line, &p.id, error)?,
        }
    }
    let ready_images: usize = ready.iter().map(|(_, job)| job.images()).sum();
    let jobs: Vec<Job> = ready.iter().map(|(_, job)| job.clone()).collect();
    let started = Instant::now();
    let Ok(rendered) = render_jobs(engine, &jobs, options.batch_size, &sink.progress, stop) else {
        return Ok(GroupEnd::Stopped { left: ready.len() });
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;

    for ((pending, job), result) in ready.into_iter().zip(rendered) {
        match result {
            Ok(pictures) => {
                let share = if ready_images == 0 { 0.0 } else { job.images() as f64 / ready_images as f64 };
                let mut warnings = lora_warnings.clone();
                warnings.extend(pending.warnings.iter().cloned());
                warnings.extend(prompt_warnings(engine, &pending, &job, sink));
                write_response(&pending, &job, &pictures, elapsed_ms * share, warnings, options, sink)?;
            }
            Err(error) => sink.fail(pending.line, &pending.id, error)?,
        }
    }
    sink.progress.finish_images(images);
    Ok(GroupEnd::Done)
}

/// The resolved job with its init image (resized; filled under the mask for outpainting) and
/// mask decoded; an image that does not decode is an error on its field.
fn job_with_images(p: &Pending) -> Result<Job, RequestError> {
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
struct Stopped;

/// Each job's images, or its error record. When the group's call fails, each job is tried
/// alone, so that one job the engine rejects does not fail the others.
fn render_jobs(
    engine: &Engine,
    jobs: &[Job],
    max_batch: usize,
    progress: &super::Progress,
    stop: &AtomicBool,
) -> Result<Vec<Result<Vec<RgbImage>, RequestError>>, Stopped> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let total_images: usize = jobs.iter().map(Job::images).sum();
    let mut report = |done, total| progress.within_group(total_images, done, total);
    match engine.render_until(jobs, max_batch, &mut report, stop) {
        Ok(images) if images.len() == jobs.len() => return Ok(images.into_iter().map(Ok).collect()),
        Ok(images) => {
            let error = format!("the engine returned {} results for {} jobs", images.len(), jobs.len());
            return Ok(jobs
                .iter()
                .map(|_| Err(RequestError::body(error.clone(), records::RENDER_FAILED)))
                .collect());
        }
        Err(GenerateError::Stopped) => return Err(Stopped),
        Err(error) if jobs.len() == 1 => return Ok(vec![Err(records::render_failed(&error))]),
        Err(_) => {}
    }
    jobs.iter()
        .map(|job| {
            let mut report = |done, total| progress.within_group(job.images(), done, total);
            match engine.render_until(std::slice::from_ref(job), max_batch, &mut report, stop) {
                Ok(mut images) if images.len() == 1 => Ok(Ok(images.remove(0))),
                Ok(_) => Ok(Err(RequestError::body("the engine returned no images", records::RENDER_FAILED))),
                Err(GenerateError::Stopped) => Err(Stopped),
                Err(error) => Ok(Err(records::render_failed(&error))),
            }
        })
        .collect()
}

/// The job's prompt tokens dropped past the family's limit, as the response's `warnings`, each
/// also said on standard error. (Tokenizing again is cheap; the render has already succeeded,
/// so the prompts parse.)
fn prompt_warnings(engine: &Engine, pending: &Pending, job: &Job, sink: &Sink) -> Vec<String> {
    let warnings: Vec<String> =
        engine.dropped_tokens(job).unwrap_or_default().iter().map(ToString::to_string).collect();
    for warning in &warnings {
        sink.progress.message(&format!("line {} (id {:?}): warning: {warning}", pending.line, pending.id));
    }
    warnings
}

/// Encodes a request's images, saves them with `--save-images` (before the response line, so a
/// response in the journal always has its files), and appends the response.
fn write_response(
    pending: &Pending,
    job: &Job,
    pictures: &[RgbImage],
    prediction_time_ms: f64,
    warnings: Vec<String>,
    options: &RunOptions,
    sink: &mut Sink,
) -> Result<(), RunError> {
    let encoding = pending.resolved.image_encoding;
    if pictures.len() != job.seeds.len() {
        let msg = format!("the engine returned {} images for {} seeds", pictures.len(), job.seeds.len());
        return sink.fail(pending.line, &pending.id, RequestError::body(msg, records::RENDER_FAILED));
    }
    let mut images = Vec::with_capacity(pictures.len());
    for (k, (picture, &seed)) in pictures.iter().zip(&job.seeds).enumerate() {
        let bytes = match encode(picture, encoding) {
            Ok(bytes) => bytes,
            Err(e) => {
                let error =
                    RequestError::body(format!("cannot encode image {k}: {e}"), records::RENDER_FAILED);
                return sink.fail(pending.line, &pending.id, error);
            }
        };
        if options.save_images {
            let path = image_path(&options.out_dir, &pending.id, k, encoding.extension());
            std::fs::write(&path, &bytes).map_err(|source| RunError::SaveImage { path, source })?;
        }
        images.push(ImageGeneration::new(STANDARD.encode(&bytes), seed));
    }
    if let Some(sheet) = &mut sink.contact {
        sheet.add_images(pending.line, &pending.id, job, pictures, prediction_time_ms)?;
    }
    let count = images.len();
    let response = Response { id: pending.id.clone(), images, prediction_time_ms, warnings };
    sink.journal.append(&pending.id, &response)?;
    sink.summary.done += 1;
    sink.summary.images += count;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn pending(fields: &str) -> Pending {
        let text = format!(r#"{{"prompt": "a boat", "width": 512, "height": 512, "seed": 5{fields}}}"#);
        let line = crate::request::parse_line(&text, 1);
        let resolved = line.request.unwrap().resolve(Family::Sd15).unwrap();
        Pending {
            line: 1,
            id: line.id,
            model: "m".into(),
            assets: Default::default(),
            resolved,
            warnings: Vec::new(),
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
