//! `kiln render --dry-run`: every line checked as a run would check it, with no model loaded,
//! and the error records the run would write put in `DIR/dry-run.jsonl` (the journal is never
//! read or touched, so a later real run is not affected).
//!
//! The checks are the run's, in the run's order, with the same error records: JSON and schema
//! ([`parse_line`]), repeated ids, the `checkpoint` name ([`assets::find_checkpoint`]), that the
//! checkpoint has every component, the model's facts read from its headers and configs (the
//! demo model's come from its embedded configs, so it is not made), the family's and the text
//! encoders' rules ([`crate::request::Request::resolve`]), that `controlnet_image` (and its
//! preprocessing), `init_image` and `mask_image` decode, and that the sampler can build the schedule asked for (LCM's 50 steps at most,
//! img2img's strength). What only loading the weights or rendering can find (a weight of the
//! wrong shape, a failed render) is not checked.
//!
//! Every line is checked, whatever the journal holds; records are in input order except the
//! repeated ids', which come last as in a run. The file is replaced in one step
//! (`replace_file`), even when empty, so an old dry run's records never linger.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_runtime::checkpoint::Checkpoint;

use super::{RunError, RunOptions, UnusableCheckpoint, assets, input, records, render, replace_file};
use crate::generate::GenerateError;
use crate::models::settings::CheckpointSettings;
use crate::models::{ModelError, ModelFacts};
use crate::request::{ErrorRecord, RefinerUse, RequestError, parse_line};
use crate::samplers::{self, SchedulerConfig};

/// The dry run's records file inside the output directory.
pub const DRY_RUN_FILE: &str = "dry-run.jsonl";

/// Messages (errors and warnings) printed on standard error before the rest are only counted.
const SHOWN_MESSAGES: usize = 20;

/// What a dry run found.
#[derive(Clone, Debug, PartialEq)]
pub struct DryRunSummary {
    /// Non-blank input lines checked.
    pub lines: usize,
    /// Lines that would render.
    pub valid: usize,
    /// Lines with an error record.
    pub failed: usize,
    /// Images the valid lines ask for.
    pub images: usize,
    /// The error records' file.
    pub records: PathBuf,
    /// Wall time of the dry run.
    pub elapsed: Duration,
    /// Checkpoints requests name that cannot be used: a run leaves their lines for a rerun
    /// (no record), so the dry run lists them here rather than as error records.
    pub unusable: Vec<UnusableCheckpoint>,
}

impl fmt::Display for DryRunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dry run: {} lines checked in {:.2} s: {} valid ({} images to render), {} with errors; error \
             records in {}",
            self.lines,
            self.elapsed.as_secs_f64(),
            self.valid,
            self.images,
            self.failed,
            self.records.display()
        )?;
        for unusable in &self.unusable {
            write!(
                f,
                "; {} lines would wait for the checkpoint {}, which cannot be used: {}",
                unusable.lines,
                unusable.path.display(),
                unusable.reason
            )?;
        }
        Ok(())
    }
}

/// Why a line would not render: its error record, or a checkpoint that cannot be used.
enum LineFault {
    Record(RequestError),
    Unusable { path: PathBuf, reason: String },
}

impl From<RequestError> for LineFault {
    fn from(error: RequestError) -> Self {
        LineFault::Record(error)
    }
}

/// Checks every line of `options.requests` (see the module documentation); errors are fatal ones,
/// as a run's: unreadable requests, a `--model` whose header does not read, an output directory
/// that cannot be created or written.
pub fn dry_run(options: &RunOptions) -> Result<DryRunSummary, RunError> {
    let started = Instant::now();
    super::check_assets(options.renderer.assets.as_deref())?;
    let out_dir = &options.out_dir;
    std::fs::create_dir_all(out_dir).map_err(|source| RunError::OutDir { path: out_dir.clone(), source })?;
    let lines = input::read_lines(&options.requests)?;
    let mut models = Headers::new(options)?;
    let refiner =
        super::refiner_path(options.renderer.assets.as_deref(), options.renderer.refiner.as_deref())?
            .is_some();
    let mut check = Checker { out: Vec::new(), failed: 0, shown: 0, hidden: 0 };

    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut duplicates = Vec::new();
    let (mut valid, mut images) = (0, 0);
    let mut unusable: Vec<UnusableCheckpoint> = Vec::new();
    for input::InputLine { number, text } in &lines {
        let parsed = match text {
            Ok(text) => parse_line(text, *number),
            Err(reason) => crate::request::Line {
                id: number.to_string(),
                request: Err(records::not_utf8(reason)),
                warnings: Vec::new(),
            },
        };
        let id = parsed.id;
        for warning in &parsed.warnings {
            check.message(format_args!("line {number} (id {id:?}): warning: {warning}"));
        }
        if let Some(&first) = first_line.get(&id) {
            duplicates.push((*number, records::duplicate_id(&id, first), id));
            continue;
        }
        first_line.insert(id.clone(), *number);
        match check_request(parsed.request, options, &mut models, refiner) {
            Ok(n) => {
                valid += 1;
                images += n;
            }
            Err(LineFault::Record(error)) => check.fail(*number, &id, error)?,
            Err(LineFault::Unusable { path, reason }) => {
                UnusableCheckpoint::tally(&mut unusable, &path, &reason);
            }
        }
    }
    for (number, error, id) in duplicates {
        check.fail(number, &id, error)?;
    }
    if check.hidden > 0 {
        eprintln!("... and {} more messages (every error record is in {DRY_RUN_FILE})", check.hidden);
    }

    let path = out_dir.join(DRY_RUN_FILE);
    replace_file::replace(&path, |file| file.write_all(&check.out))
        .map_err(|source| RunError::OutDir { path: path.clone(), source })?;
    Ok(DryRunSummary {
        lines: lines.len(),
        valid,
        failed: check.failed,
        images,
        records: path,
        elapsed: started.elapsed(),
        unusable,
    })
}

/// The checks after parsing, in the run's order; the number of images the request asks for.
fn check_request(
    request: Result<crate::request::Request, RequestError>,
    options: &RunOptions,
    models: &mut Headers,
    refiner: bool,
) -> Result<usize, LineFault> {
    let request = request?;
    let model = match &request.checkpoint {
        None => models.default_path.clone(),
        Some(name) => assets::find_checkpoint(options.renderer.assets.as_deref(), name)
            .map_err(|e| records::field_error("checkpoint", e))?,
    };
    super::prepare::find_assets(options.renderer.assets.as_deref(), &request)?;
    let header = models.header(&model);
    let unusable = |reason: &String| LineFault::Unusable { path: model.clone(), reason: reason.clone() };
    let facts = header.facts.clone().map_err(|reason| unusable(&reason))?;
    let resolved = request.resolve(facts)?;
    if matches!(resolved.refiner, RefinerUse::Requested { .. }) && !refiner {
        return Err(records::field_error("use_refiner", super::prepare::NO_REFINER).into());
    }
    // A run finds an unreadable scheduler configuration when it loads the checkpoint for the
    // request's group.
    let scheduler = header.scheduler.as_ref().map_err(unusable)?;
    if let Some(control) = &resolved.control {
        render::control_image(control, resolved.job.width as u32, resolved.job.height as u32)?;
    }
    if let Some(ip) = &resolved.ip {
        render::ip_image(ip, resolved.job.width as u32, resolved.job.height as u32)?;
    }
    if let Some(init) = &resolved.init_image {
        render::decode_field(init, "init_image")?;
        if let Some(mask) = &resolved.mask_image {
            render::decode_field(mask, "mask_image")?;
        }
    }
    // The schedule the render would build (LCM's 50 steps at most, img2img's strength).
    let job = &resolved.job;
    let strength = resolved.init_image.is_some().then_some(resolved.strength);
    samplers::build(job.sampler, scheduler, job.steps, strength)
        .map_err(|e| records::render_failed(&GenerateError::from(e)))?;
    Ok(resolved.job.images())
}

/// The error records and the messages on standard error.
struct Checker {
    /// The records, one JSON line each.
    out: Vec<u8>,
    failed: usize,
    shown: usize,
    hidden: usize,
}

impl Checker {
    fn fail(&mut self, line: usize, id: &str, error: RequestError) -> Result<(), RunError> {
        self.message(format_args!("line {line} (id {id:?}): {error}"));
        let record = ErrorRecord { id: id.to_owned(), error };
        serde_json::to_writer(&mut self.out, &record).map_err(|source| {
            RunError::Journal(super::JournalError::Serialise { id: id.to_owned(), source })
        })?;
        self.out.push(b'\n');
        self.failed += 1;
        Ok(())
    }

    fn message(&mut self, message: fmt::Arguments<'_>) {
        if self.shown < SHOWN_MESSAGES {
            eprintln!("{message}");
            self.shown += 1;
        } else {
            self.hidden += 1;
        }
    }
}

/// What a checkpoint's header and configs say, as far as a request is concerned.
#[derive(Clone, Debug)]
struct Header {
    /// Its facts, or why it cannot be read or lacks a component (the run's words).
    facts: Result<ModelFacts, String>,
    /// Its scheduler configuration, or why loading the checkpoint would fail on it.
    scheduler: Result<SchedulerConfig, String>,
}

/// The checkpoints' headers, read once each (no weights).
struct Headers {
    default_path: PathBuf,
    headers: HashMap<PathBuf, Header>,
}

impl Headers {
    /// The `--model` header (a fatal error when unreadable or incomplete, as loading it is for a
    /// run), or the demo model's known facts (its folder is neither made nor read).
    fn new(options: &RunOptions) -> Result<Headers, RunError> {
        let (default_path, header) = match &options.renderer.model {
            Some(path) => {
                let model_error =
                    |e: GenerateError| RunError::Model { path: path.clone(), source: Box::new(e) };
                let checkpoint_error = |e| model_error(GenerateError::from(ModelError::from(e)));
                let checkpoint = Checkpoint::open(path).map_err(checkpoint_error)?;
                checkpoint.require_complete().map_err(checkpoint_error)?;
                let settings = CheckpointSettings::beside(path).map_err(checkpoint_error)?;
                let scheduler = SchedulerConfig::for_checkpoint(&checkpoint, path)
                    .map_err(|e| model_error(GenerateError::from(e)))?;
                let facts = ModelFacts::of(&checkpoint).with_defaults(settings.defaults);
                (path.clone(), Header { facts: Ok(facts), scheduler: Ok(settings.apply(scheduler)) })
            }
            None => {
                let path = crate::demo::default_cache_dir().join(crate::demo::DEMO_DIR_NAME);
                (
                    path,
                    Header {
                        facts: Ok(crate::demo::demo_facts()),
                        scheduler: Ok(crate::demo::demo_scheduler()),
                    },
                )
            }
        };
        Ok(Headers { headers: HashMap::from([(default_path.clone(), header)]), default_path })
    }

    fn header(&mut self, path: &Path) -> &Header {
        self.headers.entry(path.to_path_buf()).or_insert_with(|| {
            let checkpoint = match Checkpoint::open(path) {
                Ok(checkpoint) => checkpoint,
                Err(e) => return Header { facts: Err(e.to_string()), scheduler: Err(e.to_string()) },
            };
            let settings = match CheckpointSettings::beside(path) {
                Ok(settings) => settings,
                Err(e) => return Header { facts: Err(e.to_string()), scheduler: Err(e.to_string()) },
            };
            let facts = match checkpoint.require_complete() {
                Ok(()) => Ok(ModelFacts::of(&checkpoint).with_defaults(settings.defaults)),
                Err(e) => Err(e.to_string()),
            };
            let scheduler = SchedulerConfig::for_checkpoint(&checkpoint, path)
                .map(|scheduler| settings.apply(scheduler))
                .map_err(|e| GenerateError::from(e).to_string());
            Header { facts, scheduler }
        })
    }
}
