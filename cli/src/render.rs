//! `kiln render`: a JSONL file of OctoAI requests to `DIR/responses.jsonl` (and images).
//!
//! Exit status: 0 when every line has a response, 1 when any line has an error record (this
//! run's or, on a resumed run, one already in the journal), 2 when the run could not go on at all
//! (bad model path, a model config out of range, unwritable output directory, unreadable requests,
//! another process writing to the output directory), with one line saying why, and also when a
//! checkpoint requests name (`--assets`) could not be opened or loaded: its lines get no record,
//! so a rerun renders them once the file is fixed, while the other lines render; 130 (SIGINT) or
//! 143 (SIGTERM) when a signal stopped the run early ([`crate::signals`]).
//! With `--dry-run`: 0 when every line is valid, 1 otherwise, 2 as above (an unusable checkpoint
//! included). A dry run does not lock
//! the output directory: it never reads or writes the journal, so it can check a file while a
//! render writes there.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kiln_pipeline::demo::DEMO_NOTICE;
use kiln_pipeline::runner::{self, RequestSource, RunOptions, Shard};
use kiln_runtime::Device;

use crate::model_args::ModelArgs;
use crate::signals::StopOnSignals;

/// Arguments of `kiln render`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub(crate) models: ModelArgs,
    /// The requests, one JSON object per line (`-` for standard input).
    pub(crate) requests: String,
    /// Directory for responses.jsonl (appended; rerunning resumes) and images/.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// cpu, cuda or cuda:N; several (cuda:0,cuda:1) render one shard each in a process of its
    /// own (DIR/shard-I-of-N) and merge them into DIR/responses.jsonl.
    #[arg(long, default_value = "cpu", value_delimiter = ',')]
    pub(crate) device: Vec<Device>,
    /// Also write each image to DIR/images/{id}_{k}.{png|jpg}.
    #[arg(long)]
    save_images: bool,
    /// Check every line (schema, sizes, the model's family, checkpoints, images) without loading
    /// a model; write the error records a run would write to DIR/dry-run.jsonl.
    #[arg(long)]
    dry_run: bool,
    /// Once every line has its record, rewrite DIR/responses.jsonl in input order.
    #[arg(long)]
    ordered: bool,
    /// When standard error is not a terminal, print a progress line every SECS seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = seconds)]
    progress_interval: f64,
    /// Also keep DIR/index.html (thumbnails with id, seed, prompt, sampler, steps, time; error
    /// records with their message) and DIR/contact.png (a captioned thumbnail grid) up to date.
    #[arg(long)]
    contact_sheet: bool,
    /// Render only shard I of N (0-based) of the lines, by a stable hash of each line's id, into
    /// DIR/shard-I-of-N/ (its own journal; rerun to resume); `auto` takes I (and N) from a
    /// Slurm job array or a Kubernetes Indexed Job. Combine the shards with `kiln merge`.
    #[arg(long, value_name = "I/N|auto")]
    pub(crate) shard: Option<String>,
    /// The number of shards for `--shard auto` (a Kubernetes Indexed Job's completions; Slurm's
    /// array size is read from SLURM_ARRAY_TASK_COUNT).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
}

/// A byte count: digits with an optional K, M, G or T suffix (powers of 1024).
pub(crate) fn bytes(arg: &str) -> Result<u64, String> {
    let (digits, shift) = match arg.trim().char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{arg:?}: the suffix must be K, M, G or T")),
            };
            (&arg.trim()[..i], shift)
        }
        _ => (arg.trim(), 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{arg:?} is not a byte count such as 8G or 500M"))
}

/// A non-negative number of seconds.
fn seconds(arg: &str) -> Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 && secs < 1e9 => Ok(secs),
        _ => Err(format!("{arg:?} is not a number of seconds (0 or more)")),
    }
}

/// Runs `kiln render` and returns its exit status.
pub fn run(args: &Args) -> ExitCode {
    match run_inner(args) {
        Ok(status) => status,
        Err(message) => {
            eprintln!("kiln render: {message}");
            ExitCode::from(2)
        }
    }
}

/// `device`, checked to exist (a CUDA device needs the `cuda` build and the GPU).
pub(crate) fn checked_device(device: Device) -> Result<Device, String> {
    match device {
        Device::Cpu => Ok(Device::Cpu),
        Device::Cuda(n) => Device::cuda(n).map_err(|e| format!("--device {device}: {e}")),
    }
}

/// `--shard`: `I/N`, or `auto` from the job array's environment.
fn shard(args: &Args) -> Result<Option<Shard>, String> {
    match args.shard.as_deref() {
        None if args.shards.is_some() => Err("--shards N goes with --shard auto".into()),
        None => Ok(None),
        Some("auto") => Shard::from_env(args.shards).map(Some).map_err(|e| format!("--shard auto: {e}")),
        Some(_) if args.shards.is_some() => {
            Err("--shards N goes with --shard auto (--shard I/N names N)".into())
        }
        Some(text) => text.parse().map(Some).map_err(|e| format!("--shard: {e}")),
    }
}

fn run_inner(args: &Args) -> Result<ExitCode, String> {
    if args.dry_run {
        return dry_run(args);
    }
    if args.device.len() > 1 {
        return crate::devices::render(args);
    }
    let shard = shard(args)?;
    let out = match shard {
        Some(shard) => {
            let dir = args.out.join(shard.dir_name());
            eprintln!(
                "shard {shard}: this process renders the lines whose id hashes to {}, into {}",
                shard.index,
                dir.display()
            );
            dir
        }
        None => args.out.clone(),
    };
    let device = checked_device(args.device.first().copied().unwrap_or(Device::Cpu))?;
    if args.models.model.is_none() {
        eprintln!("{DEMO_NOTICE}");
    }
    let options = RunOptions {
        save_images: args.save_images,
        progress: true,
        progress_interval: Duration::from_secs_f64(args.progress_interval),
        ordered: args.ordered,
        contact_sheet: args.contact_sheet,
        shard,
        ..RunOptions::new(RequestSource::from_arg(&args.requests), out.clone(), args.models.renderer(device))
    };
    let signals = StopOnSignals::install().map_err(|e| format!("cannot handle SIGINT and SIGTERM: {e}"))?;
    let summary = runner::run_until(&options, signals.flag()).map_err(|e| e.to_string())?;
    println!("{summary}");
    println!("responses: {}", out.join(runner::JOURNAL_FILE).display());
    if let Some(sorted) = &summary.ordered {
        println!("responses: {sorted}");
    }
    if args.contact_sheet {
        println!("contact sheet: {}", out.join(runner::contact::INDEX_FILE).display());
    }
    if let Some(status) = signals.exit_status() {
        return Ok(ExitCode::from(status));
    }
    if summary.unrendered() > 0 {
        return Ok(ExitCode::from(2));
    }
    let failed = summary.failed + summary.skipped_failed > 0;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `--dry-run`: no device and no model, only the requests, the checkpoints' headers and the
/// assets (see [`runner::dry_run()`]); the summary goes to standard error.
fn dry_run(args: &Args) -> Result<ExitCode, String> {
    let renderer = args.models.renderer(Device::Cpu);
    let options = RunOptions::new(RequestSource::from_arg(&args.requests), args.out.clone(), renderer);
    let summary = runner::dry_run(&options).map_err(|e| e.to_string())?;
    eprintln!("{summary}");
    Ok(if !summary.unusable.is_empty() {
        ExitCode::from(2)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
