//! `kiln bench`: times one model call, a guided step or a whole image on this machine, with the
//! achieved GFLOP/s against the machine's measured FMA peak and the share of time per family
//! of ops, so a user measures their own machine in one command.
//!
//! The model is a checkpoint (`--model`), full-size random weights written from the committed
//! key manifests (`--random sd15|sdxl`: no download), or the built-in demo model.

mod machine;
mod report;
mod subject;
mod timing;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use kiln_runtime::{DType, Device};

use subject::Subject;

/// What `kiln bench` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// One UNet call at `--batch`.
    Unet,
    /// One guided denoising step: the UNet at twice `--batch` (both guidance halves) and the
    /// guidance arithmetic.
    Step,
    /// One VAE decode of `--batch` latents.
    Vae,
    /// The text encoder(s) on `--batch` prompt and negative-prompt pairs.
    Text,
    /// Whole images: text, `--steps` guided steps and the decode, as `kiln render` does.
    Image,
    /// The machine's f32 FMA peak alone.
    Peak,
}

/// A family whose published layout `--random` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RandomFamily {
    /// Stable Diffusion 1.5 (`fixtures/manifests/sd15.diffusers.json`).
    Sd15,
    /// SDXL base 1.0 (`fixtures/manifests/sdxl_base.diffusers.json`).
    Sdxl,
}

/// `kiln bench`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// What to time.
    #[arg(value_enum)]
    pub what: What,
    /// A single-file checkpoint or a diffusers folder (default: the built-in demo model).
    #[arg(long, conflicts_with = "random")]
    pub model: Option<PathBuf>,
    /// Full-size random weights in this family's published layout instead of a checkpoint.
    #[arg(long, value_enum)]
    pub random: Option<RandomFamily>,
    /// The stored dtype of `--random` weights (published checkpoints are mostly f16).
    #[arg(long, default_value = "f16")]
    pub random_dtype: DType,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// The compute dtype: f32, f16 or bf16 (default: f32 on the CPU, f16 on CUDA).
    #[arg(long)]
    pub dtype: Option<DType>,
    /// Image width and height in pixels (default: the model's native size, 512 or 1024).
    #[arg(long)]
    pub size: Option<usize>,
    /// Images per call.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub batch: u32,
    /// Timed calls (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub iters: u32,
    /// Untimed calls first (they fault in fresh memory).
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Denoising steps of `image`.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub steps: u32,
}

/// Runs `kiln bench`; exit status 0 timed, 2 the model or inputs could not be set up.
pub fn run(args: &Args) -> ExitCode {
    match bench(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kiln bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn bench(args: &Args) -> Result<()> {
    let device = crate::render::checked_device(args.device).map_err(anyhow::Error::msg)?;
    let machine = machine::Machine::read();
    println!("{}", machine.describe());
    let peak = kiln_runtime::cpu::peak::measure_fma_peak(std::time::Duration::from_millis(600));
    println!(
        "f32 FMA peak: {:.1} GFLOP/s ({}, {} threads, a tight loop of independent FMAs)",
        peak.flops / 1e9,
        peak.isa,
        peak.threads
    );
    let tile_peak = kiln_runtime::cpu::amx::measure_tile_peak(std::time::Duration::from_millis(300));
    match tile_peak {
        Some(flops) => println!(
            "bf16 AMX tile peak: {:.1} GFLOP/s ({} threads, tile products on registers; used by --dtype bf16)",
            flops / 1e9,
            peak.threads
        ),
        None => println!("bf16 AMX tiles: not available (this CPU or OS, or KILN_CPU_AMX=0)"),
    }
    if args.what == What::Peak {
        return Ok(());
    }
    let dtype = args.dtype.unwrap_or(if device.is_cpu() { DType::F32 } else { DType::F16 });
    let model = subject::ModelSource::from_args(args).context("setting up the model")?;
    let subject = Subject::load(args, &model, dtype, device).context("loading the model")?;
    eprintln!("{}", subject.describe());
    let result = timing::time(&subject, args.warmup as usize, args.iters as usize)?;
    let (hwm, _) = machine::memory_gib();
    report::print(&result, &subject, (peak, tile_peak), hwm, &machine);
    Ok(())
}
