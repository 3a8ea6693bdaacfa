//! The JSONL batch runner behind `kiln render`: OctoAI requests in, one response line per request
//! out, resumable after a kill.
//!
//! - [`run`] with [`RunOptions`]: the whole command; returns a [`Summary`] or a fatal [`RunError`];
//! - [`renderer`]: the entry point it is built on, which `kiln serve` and serving stacks use too:
//!   [`Renderer`] (loaded models, batches rendered to [`Outcome`]s) and [`encode_response`];
//! - [`prepare`]: one validation for every front end ([`Validator::prepare`]: a request to a
//!   [`Prepared`] one, or OctoAI's 422 body);
//! - [`shard`] and [`merge`](mod@merge): `--shard I/N` and `kiln merge`, one input over many
//!   machines;
//! - [`input`]: the requests file or standard input, as numbered lines;
//! - [`journal`]: `DIR/responses.jsonl`, appended one flushed line per request, read back to resume;
//! - [`lock`]: `DIR/.kiln.lock`, so that one process at a time writes to an output folder;
//! - [`batch`]: which pending requests share one engine call;
//! - [`assets`]: `--assets DIR` lookup by kind and name, and file names for saved images;
//! - [`catalog`]: `kiln assets DIR`, what each entry of a library is;
//! - [`records`]: error records for failures after validation;
//! - [`progress`]: the progress bar (or, in a log, a line every interval) and the end-of-run summary;
//! - [`dry_run()`]: `--dry-run`, every line checked with no model loaded;
//! - [`ordered`]: `--ordered` and `kiln sort`, the journal rewritten in input order.
//! - [`contact`]: `--contact-sheet`'s `index.html` and `contact.png`, updated as the run goes.
//!
//! A run reads every line, skips the ids the journal already holds, writes an error record at
//! once for each line that cannot run (malformed JSON, validation, unknown checkpoint), then
//! renders the rest group by group ([`batch::group`]: same model, LoRA set and
//! [`crate::generate::BatchKey`], up to `batch_size` images), appending each request's line as
//! its group completes, in input order within the group. Init and mask images are decoded when
//! their group renders, so a large file never holds every decoded image at once. Error records
//! for repeated ids come last, so a resumed run counts them right. A line's failure never stops
//! the run; only what makes every line fail is fatal (the model, the output directory, the input).
//! A checkpoint from `--assets` that cannot be opened or loaded leaves its lines without a record
//! ([`Summary::unusable`]): the file is at fault, and a rerun renders them once it is fixed.
//!
//! [`run_until`] also takes a stop flag (set by the CLI on SIGINT or SIGTERM): once it is set, the
//! group rendering stops before its next UNet call, and the run journals nothing more, syncs the
//! journal and returns its summary marked [`Summary::stopped`]; the lines left have no record, so
//! a rerun renders them.
//!
//! `prediction_time_ms` is the wall time of the group's render shared by image count: a request
//! with `n` of the group's `N` images gets `n / N` of it.

pub mod assets;
pub mod batch;
pub mod catalog;
pub mod contact;
pub mod dry_run;
pub mod input;
pub mod journal;
pub mod lock;
pub mod merge;
mod models;
pub mod ordered;
pub mod prepare;
pub mod progress;
mod progress_lines;
pub mod records;
mod render;
pub mod renderer;
mod replace_file;
pub mod shard;
mod sink;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::generate::GenerateError;
use crate::models::ModelFacts;
use crate::request::{RequestError, parse_line};
use assets::AssetKind;
use sink::Sink;

pub use dry_run::{DRY_RUN_FILE, DryRunSummary, dry_run};
pub use input::{InputError, RequestSource};
pub use journal::{JOURNAL_FILE, Journal, JournalError};
pub use lock::{LOCK_FILE, LockError, OutDirLock};
pub use merge::{Merged, merge};
pub use ordered::{Sorted, sort_journal};
pub use prepare::{Prepared, PreparedKey, Refusal, Validator};
pub use progress::{ModelLoad, Progress, Summary, UnusableCheckpoint};
pub use renderer::{Batch, Done, Outcome, Renderer, RendererOptions, Stopped, encode_response};
pub use shard::Shard;

/// The folder (inside the output directory) for `--save-images`.
pub const IMAGES_DIR: &str = "images";

/// What `kiln render` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The JSONL requests.
    pub requests: RequestSource,
    /// The output directory (created if missing).
    pub out_dir: PathBuf,
    /// The model, asset library, device, dtype, batch size and the other model flags.
    pub renderer: RendererOptions,
    /// Also write each image to `DIR/images/{id}_{k}.{png|jpg}`.
    pub save_images: bool,
    /// Draw the progress bar on standard error (when that is a terminal).
    pub progress: bool,
    /// When standard error is not a terminal, print a progress line this often (zero: never).
    pub progress_interval: Duration,
    /// Once every line has its record, rewrite the journal in input order ([`ordered`]).
    pub ordered: bool,
    /// Keep `DIR/index.html` and `DIR/contact.png` ([`contact`]) up to date as the run goes.
    pub contact_sheet: bool,
    /// Render only this shard's lines (`--shard I/N`; see [`shard`]); `None`: every line.
    pub shard: Option<Shard>,
}

impl RunOptions {
    /// `requests` into `out_dir` with `renderer`; no images saved, no progress, completion
    /// order, no contact sheet, every line.
    pub fn new(requests: RequestSource, out_dir: PathBuf, renderer: RendererOptions) -> RunOptions {
        RunOptions {
            requests,
            out_dir,
            renderer,
            save_images: false,
            progress: false,
            progress_interval: Duration::ZERO,
            ordered: false,
            contact_sheet: false,
            shard: None,
        }
    }
}

/// What stops a whole run (a bad line never does).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The output directory (or its images folder) cannot be created.
    #[error("cannot create the output directory {path}: {source}")]
    OutDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The `--assets` folder is missing or not a folder.
    #[error("the --assets folder {path} does not exist or is not a folder")]
    Assets {
        /// The folder given.
        path: PathBuf,
    },
    /// Another process is writing to the output directory, or it cannot be locked.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The journal cannot be read, repaired or appended to.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The requests cannot be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The demo model cannot be made.
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    /// The `--refiner` checkpoint cannot be opened, or is not an SDXL refiner.
    #[error("cannot use the refiner {path}: {reason}")]
    Refiner {
        /// The checkpoint given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The `--model` checkpoint cannot be loaded.
    #[error("cannot load the model {path}: {source}")]
    Model {
        /// The checkpoint.
        path: PathBuf,
        /// Why.
        source: Box<GenerateError>,
    },
    /// The contact sheet cannot be read or written.
    #[error(transparent)]
    Contact(#[from] contact::ContactError),
    /// An image file cannot be written.
    #[error("cannot write {path}: {source}")]
    SaveImage {
        /// The image file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A prepared request and its line.
#[derive(Debug)]
struct Pending {
    line: usize,
    prepared: Prepared,
}

/// Runs a whole request file (see the module documentation). Errors are fatal ones; each
/// line's failure is its error record in the journal and counted in [`Summary::failed`].
pub fn run(options: &RunOptions) -> Result<Summary, RunError> {
    run_until(options, &AtomicBool::new(false))
}

/// A `--assets` folder that is not there is a fatal error before anything is written, rather than
/// an error record for every request naming a checkpoint.
pub(crate) fn check_assets(assets: Option<&Path>) -> Result<(), RunError> {
    match assets {
        Some(path) if !path.is_dir() => Err(RunError::Assets { path: path.to_path_buf() }),
        _ => Ok(()),
    }
}

/// [`run`], stopping early once `stop` is set (see the module documentation).
pub fn run_until(options: &RunOptions, stop: &AtomicBool) -> Result<Summary, RunError> {
    let started = Instant::now();
    check_assets(options.renderer.assets.as_deref())?;
    let out_dir = &options.out_dir;
    std::fs::create_dir_all(out_dir).map_err(|source| RunError::OutDir { path: out_dir.clone(), source })?;
    let _lock = OutDirLock::acquire(out_dir)?;
    if options.save_images {
        let images = out_dir.join(IMAGES_DIR);
        std::fs::create_dir_all(&images).map_err(|source| RunError::OutDir { path: images, source })?;
    }
    let journal = Journal::open(out_dir)?;
    let lines = input::read_lines(&options.requests)?;
    let input_order = options.ordered.then(|| {
        let mut ids = ordered::input_ids(&lines);
        ids.retain(|(_, id)| options.shard.is_none_or(|shard| shard.owns(id)));
        ids
    });
    let mut renderer = Renderer::load(&options.renderer)?;
    let contact = if options.contact_sheet { Some(contact::ContactSheet::open(out_dir)?) } else { None };
    let mut sink = Sink { journal, summary: Summary::default(), progress: Progress::hidden(0), contact };
    if sink.journal.repaired_bytes() > 0 {
        eprintln!(
            "{}: cut off a partial last line ({} bytes) left by an interrupted run",
            sink.journal.path().display(),
            sink.journal.repaired_bytes()
        );
    }

    let (pending, duplicates) = plan(lines, options, renderer.validator(), &mut sink)?;
    sink.journal.sync()?;
    let total_images: usize = pending.iter().map(|p| p.prepared.images()).sum();
    sink.progress = if options.progress {
        Progress::new(total_images as u64, options.progress_interval)
    } else {
        Progress::hidden(0)
    };

    let keyed = pending.into_iter().map(|p| (p.prepared.key(), p.prepared.images(), p));
    let mut groups = batch::group(keyed, options.renderer.batch_size);
    // Groups of one model stay together, and within them groups of one asset set (LoRAs, VAE,
    // embeddings), so that each model loads once and each set is applied once.
    batch::cluster_by(&mut groups, |g| {
        let p = &g.items[0].prepared;
        (p.model.clone(), p.assets.clone())
    });
    batch::cluster_by(&mut groups, |g| g.items[0].prepared.model.clone());
    let mut groups = groups.into_iter();
    let mut left = 0;
    for group in groups.by_ref() {
        if stop.load(Ordering::Relaxed) {
            left = group.items.len();
            break;
        }
        let images = group.images;
        let lines: HashMap<String, usize> =
            group.items.iter().map(|p| (p.prepared.id.clone(), p.line)).collect();
        let requests: Vec<Prepared> = group.items.into_iter().map(|p| p.prepared).collect();
        let progress = &sink.progress;
        let mut report = |group_images, done, total| progress.within_group(group_images, done, total);
        let rendered = renderer.render(requests, &mut report, stop);
        let (batch, stopped) = match rendered {
            Ok(batch) => (batch, 0),
            Err(Stopped { done, left }) => (done, left),
        };
        for message in &batch.log {
            sink.progress.message(message);
        }
        for (prepared, outcome) in batch.results {
            sink.record(lines[&prepared.id], prepared, outcome, options)?;
        }
        sink.journal.sync()?;
        if stopped > 0 {
            left = stopped;
            break;
        }
        sink.progress.finish_images(images);
        if let Some(sheet) = &mut sink.contact {
            sheet.refresh()?;
        }
    }
    let left = left + groups.map(|g| g.items.len()).sum::<usize>();
    if left > 0 {
        // Repeated ids' records wait too: written before their first occurrence's, they would be
        // taken for it on the rerun.
        sink.summary.stopped = Some(left + duplicates.len());
    } else if sink.summary.unrendered() == 0 {
        // (They wait likewise while lines wait for a checkpoint to be fixed.)
        for (line, id, error) in duplicates {
            sink.fail(line, &id, error)?;
        }
    }
    sink.journal.sync()?;
    if let Some(sheet) = &mut sink.contact {
        sheet.write()?;
    }
    sink.progress.finish();
    let complete = sink.summary.stopped.is_none() && sink.summary.unusable.is_empty();
    if let Some(ids) = input_order.filter(|_| complete) {
        sink.summary.ordered = Some(ordered::sort_journal(out_dir, &ids)?);
    }
    sink.summary.elapsed = started.elapsed();
    sink.summary.loads = renderer.loads();
    Ok(sink.summary)
}

/// A later line with an id an earlier line has: (line, id, its error).
type Duplicate = (usize, String, RequestError);

/// Reads every line: skips those the journal holds, writes the error records of those that
/// cannot run, and returns the rest (plus the repeated ids, whose records are written last).
fn plan(
    lines: Vec<input::InputLine>,
    options: &RunOptions,
    validator: &Validator,
    sink: &mut Sink,
) -> Result<(Vec<Pending>, Vec<Duplicate>), RunError> {
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new(); // id -> (first line, times seen)
    let mut pending = Vec::new();
    let mut duplicates = Vec::new();
    for input::InputLine { number, text } in lines {
        let parsed = match &text {
            Ok(text) => parse_line(text, number),
            Err(reason) => crate::request::Line {
                id: number.to_string(),
                request: Err(records::not_utf8(reason)),
                warnings: Vec::new(),
            },
        };
        let id = parsed.id;
        if options.shard.is_some_and(|shard| !shard.owns(&id)) {
            sink.summary.other_shards += 1;
            continue;
        }
        let (first_line, times) = {
            let entry = seen.entry(id.clone()).or_insert((number, 0));
            entry.1 += 1;
            *entry
        };
        // The journal holds one record per occurrence already run, in occurrence order.
        if sink.journal.count(&id) >= times {
            sink.summary.skipped += 1;
            if sink.journal.is_error(&id, times - 1) {
                sink.summary.skipped_failed += 1;
            }
            continue;
        }
        for warning in &parsed.warnings {
            sink.progress.message(&format!("line {number} (id {id:?}): warning: {warning}"));
        }
        if times > 1 {
            duplicates.push((number, id.clone(), records::duplicate_id(&id, first_line)));
            continue;
        }
        let request = match parsed.request {
            Ok(request) => request,
            Err(error) => {
                sink.fail(number, &id, error)?;
                continue;
            }
        };
        match validator.prepare(id.clone(), request) {
            Ok(prepared) => {
                sink.summary.without_refiner += usize::from(prepared.without_refiner);
                pending.push(Pending { line: number, prepared });
            }
            Err(Refusal::Invalid(error)) => sink.fail(number, &id, error)?,
            Err(Refusal::Unusable { checkpoint, reason }) => sink.unusable_checkpoint(&checkpoint, &reason),
        }
    }
    warn_surplus_records(&seen, sink);
    Ok((pending, duplicates))
}

/// The refiner: `--refiner` (checked now to be an SDXL refiner: a fatal error otherwise), else
/// the library's `checkpoints/sdxl-refiner` if it has one (checked when first used).
fn refiner_path(library: Option<&Path>, refiner: Option<&Path>) -> Result<Option<PathBuf>, RunError> {
    let Some(path) = refiner else {
        return Ok(assets::find(library, AssetKind::Checkpoint, REFINER_ASSET).ok());
    };
    let refused = |reason: String| RunError::Refiner { path: path.to_path_buf(), reason };
    let family = ModelFacts::read(path).map_err(|e| refused(e.to_string()))?.family;
    if family != kiln_runtime::checkpoint::Family::SdxlRefiner {
        return Err(refused(format!("it is {family}, not an SDXL refiner")));
    }
    Ok(Some(path.to_path_buf()))
}

/// The refiner's name in the assets library (`checkpoints/sdxl-refiner`, or `octoai:sdxl-refiner`).
pub const REFINER_ASSET: &str = "sdxl-refiner";

/// The most ids [`warn_surplus_records`] names.
const SURPLUS_IDS_NAMED: usize = 20;

/// Warns about ids the journal holds more records for than the input has lines (runs that wrote
/// to the folder at the same time, before it was locked): each line still counts once, by its
/// own record (the `k`-th occurrence takes the `k`-th record), and the extra records are ignored.
fn warn_surplus_records(seen: &HashMap<String, (usize, usize)>, sink: &Sink) {
    let mut surplus: Vec<(usize, &str)> = seen
        .iter()
        .filter(|(id, (_, times))| sink.journal.count(id) > *times)
        .map(|(id, (first_line, _))| (*first_line, id.as_str()))
        .collect();
    if surplus.is_empty() {
        return;
    }
    surplus.sort_unstable();
    let named: Vec<String> =
        surplus.iter().take(SURPLUS_IDS_NAMED).map(|(_, id)| format!("{id:?}")).collect();
    let more = surplus.len().saturating_sub(SURPLUS_IDS_NAMED);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    let ids = if surplus.len() == 1 { "1 id".to_owned() } else { format!("{} ids", surplus.len()) };
    sink.progress.message(&format!(
        "{}: warning: more records than input lines for {ids} (runs that wrote to this folder at \
         the same time?); each line counts once, by its own record, and the extra records are \
         ignored: {}{more}",
        sink.journal.path().display(),
        named.join(", ")
    ));
}

/// `DIR/images/{id}_{k}.{ext}`.
fn image_path(out_dir: &Path, id: &str, k: usize, extension: &str) -> PathBuf {
    out_dir.join(IMAGES_DIR).join(format!("{}_{k}.{extension}", assets::file_stem(id)))
}
