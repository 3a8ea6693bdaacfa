//! `kiln-peer`: kiln and candle's Stable Diffusion side by side on the CPU, in one process, on the
//! very same random weights and inputs.
//!
//! For each case (SD 1.5 / SDXL, UNet call / VAE decode) and dtype it writes full-size random
//! weights from kiln's committed key manifest (`weights`), loads kiln's model (`kiln_side`), times
//! its calls, drops it, then does the same with candle's (`candle_side`); only one engine's model
//! is in memory at a time (SDXL's f32 UNet is 10 GB). It prints one markdown table with both
//! engines' times, their ratio, and how far the two outputs are apart, which shows both computed
//! the same function. An engine that fails (a dtype it lacks) gets `unsupported` in its cell.
//!
//! Arguments are parsed in two stages: [`Args`] as typed by the user, then [`Options`] validated.

mod candle_side;
mod cases;
mod inputs;
mod kiln_side;
mod report;
mod system;
mod timing;
mod weights;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;

use cases::{CASES, Case, Precision};
use inputs::Inputs;
use report::{Outcome, Row};
use timing::{Plan, Run};

/// kiln vs candle Stable Diffusion on the CPU, same random weights and inputs.
#[derive(Parser, Debug)]
#[command(name = "kiln-peer")]
struct Args {
    /// Cases to run: sd15-unet, sd15-vae, sdxl-unet, sdxl-vae (default: all four).
    cases: Vec<String>,
    /// Comma-separated dtypes: f32, bf16, f16.
    #[arg(long, default_value = "f32,bf16")]
    dtype: String,
    /// Timed calls per engine (the median is reported).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Untimed calls per engine before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Write the random weights under DIR and keep them for the next run (default: a temporary
    /// folder, removed after each case).
    #[arg(long, value_name = "DIR")]
    keep_weights: Option<PathBuf>,
    /// Load and build both engines' models, make no call: checks weights and configs fit.
    #[arg(long)]
    dry: bool,
    /// Override the latent side (a quick shape check of the big models; times are then not the
    /// published sizes').
    #[arg(long, hide = true)]
    latent: Option<usize>,
}

/// Validated options.
struct Options {
    cases: Vec<Case>,
    precisions: Vec<Precision>,
    plan: Plan,
    keep_weights: Option<PathBuf>,
    latent: Option<usize>,
}

impl Options {
    fn from_args(args: Args) -> anyhow::Result<Options> {
        let cases = if args.cases.is_empty() {
            CASES.to_vec()
        } else {
            args.cases
                .iter()
                .map(|name| {
                    cases::find(name).ok_or_else(|| {
                        let known: Vec<&str> = CASES.iter().map(|c| c.name).collect();
                        anyhow::anyhow!("unknown case `{name}`; known: {}", known.join(", "))
                    })
                })
                .collect::<anyhow::Result<_>>()?
        };
        let precisions = args
            .dtype
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                Precision::parse(s)
                    .ok_or_else(|| anyhow::anyhow!("unknown dtype `{s}`; known: f32, bf16, f16"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if precisions.is_empty() {
            bail!("--dtype names no dtype");
        }
        if args.iters == 0 && !args.dry {
            bail!("--iters must be at least 1 (or use --dry)");
        }
        if let Some(l) = args.latent
            && (l == 0 || l % 8 != 0)
        {
            bail!("--latent {l}: must be a positive multiple of 8 (the SD 1.5 UNet halves it three times)");
        }
        Ok(Options {
            cases,
            precisions,
            plan: Plan { warmup: args.warmup, iters: args.iters, dry: args.dry },
            keep_weights: args.keep_weights,
            latent: args.latent,
        })
    }
}

/// Runs one engine, turning an error or a panic into the message its cell notes.
fn guarded(engine: &str, label: &str, f: impl FnOnce() -> anyhow::Result<Run>) -> Outcome {
    let result = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(run)) => return Ok(run),
        // First line only: with RUST_BACKTRACE set, candle's errors carry a backtrace.
        Ok(Err(e)) => format!("{e:#}").lines().next().unwrap_or_default().to_string(),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            format!("panicked: {msg}")
        }
    };
    eprintln!("{label} {engine}: failed: {result}");
    Err(result)
}

/// One row: weights, inputs, kiln, then candle (each model dropped before the next loads).
fn run_row(
    case: &Case,
    precision: Precision,
    opts: &Options,
    notes: &mut Vec<String>,
) -> anyhow::Result<Row> {
    let label = format!("{} {precision}", case.name);
    let latent = opts.latent.unwrap_or(case.latent);
    if latent != case.latent {
        let (name, full) = (case.name, case.latent);
        notes.push(format!("{name}: latent {latent}x{latent} instead of {full}x{full} (--latent)"));
    }
    let weights = weights::materialize(case, precision, opts.keep_weights.as_deref())?;
    let inputs = Inputs::new(case, latent);
    let kiln =
        guarded("kiln", &label, || kiln_side::run(case, precision, &weights.root, &inputs, &opts.plan));
    let candle =
        guarded("candle", &label, || candle_side::run(case, precision, &weights.file, &inputs, &opts.plan));
    for run in [&kiln, &candle].into_iter().flatten() {
        notes.extend(run.note.clone());
    }
    Ok(Row { case: case.name, precision, kiln, candle })
}

fn main() -> anyhow::Result<()> {
    let opts = Options::from_args(Args::parse())?;
    println!("CPU: {}", system::cpu());
    println!("{}", system::candle_build());
    println!("{}", system::snapshot("start"));
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for case in &opts.cases {
        for &precision in &opts.precisions {
            rows.push(run_row(case, precision, &opts, &mut notes)?);
        }
    }
    println!();
    print!("{}", report::render(&rows, &notes));
    println!();
    println!("{}", system::snapshot("end"));
    Ok(())
}
