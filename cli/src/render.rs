//! `kiln render`: a JSONL file of OctoAI requests to `DIR/responses.jsonl` (and images).
//!
//! Exit status: 0 when every line has a response, 1 when any line has an error record (this
//! run's or, on a resumed run, one already in the journal), 2 when the run could not go on at all
//! (bad model path, unwritable output directory, unreadable requests), with one line saying why.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_pipeline::demo::DEMO_NOTICE;
use kiln_pipeline::runner::{self, RequestSource, RunOptions};
use kiln_runtime::{DType, Device};

/// Arguments of `kiln render`.
#[derive(clap::Args)]
pub struct Args {
    /// The requests, one JSON object per line (`-` for standard input).
    requests: String,
    /// Directory for responses.jsonl (appended; rerunning resumes) and images/.
    #[arg(long)]
    out: PathBuf,
    /// A single-file checkpoint or a diffusers folder (default: the built-in demo model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Directory whose checkpoints/NAME(.safetensors) requests name with "checkpoint".
    #[arg(long)]
    assets: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// f32, f16 or bf16 (default: f32 on the CPU, f16 on CUDA).
    #[arg(long)]
    dtype: Option<DType>,
    /// The most images rendered in one batch.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch_size: u32,
    /// Also write each image to DIR/images/{id}_{k}.{png|jpg}.
    #[arg(long)]
    save_images: bool,
    /// Also keep DIR/index.html (thumbnails with id, seed, prompt, sampler, steps, time; error
    /// records with their message) and DIR/contact.png (a captioned thumbnail grid) up to date.
    #[arg(long)]
    contact_sheet: bool,
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

fn run_inner(args: &Args) -> Result<ExitCode, String> {
    let device = match args.device {
        Device::Cpu => Device::Cpu,
        Device::Cuda(n) => Device::cuda(n).map_err(|e| format!("--device {}: {e}", args.device))?,
    };
    let dtype = args.dtype.unwrap_or(if device.is_cpu() { DType::F32 } else { DType::F16 });
    if args.model.is_none() {
        eprintln!("{DEMO_NOTICE}");
    }
    let options = RunOptions {
        requests: RequestSource::from_arg(&args.requests),
        out_dir: args.out.clone(),
        model: args.model.clone(),
        assets: args.assets.clone(),
        device,
        dtype,
        batch_size: args.batch_size as usize,
        save_images: args.save_images,
        progress: true,
        contact_sheet: args.contact_sheet,
    };
    let summary = runner::run(&options).map_err(|e| e.to_string())?;
    println!("{summary}");
    println!("responses: {}", args.out.join(runner::JOURNAL_FILE).display());
    if args.contact_sheet {
        println!("contact sheet: {}", args.out.join(runner::contact::INDEX_FILE).display());
    }
    let failed = summary.failed + summary.skipped_failed > 0;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
