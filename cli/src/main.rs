//! The `kiln` command.

mod assets;
mod bench;
mod devices;
mod inspect;
mod merge;
mod model_args;
mod render;
mod serve;
mod signals;
mod sort;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kiln", version, about = "Stable Diffusion 1.5 and SDXL rendering on CUDA and CPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a JSONL file of OctoAI-style requests to DIR/responses.jsonl; rerunning the same
    /// command resumes. Exit status: 0 all lines succeeded, 1 some failed, 2 the run could not go on
    /// (or another kiln process is using DIR), 130/143 stopped by SIGINT/SIGTERM.
    Render(render::Args),
    /// Serve OctoAI's image API over HTTP: POST /generate/{sdxl,sd,ssd,controlnet-sdxl}, with
    /// dynamic batching, bearer tokens (--token-file), /healthz, /readyz, /metrics and
    /// /openapi.json. Exit status: 0 after SIGINT/SIGTERM (accepted requests finish first), 2 the
    /// server could not start.
    Serve(serve::Args),
    /// Combine the shards of a `kiln render --shard` run into OUT/responses.jsonl in input order
    /// (and their images into OUT/images), checking that every input line is answered exactly
    /// once. Exit status: 0 written, 1 lines missing or answered twice (listed; nothing written),
    /// 2 unreadable requests or journals.
    Merge(merge::Args),
    /// Describe a checkpoint: format, family, each component's size, parameters and dtypes,
    /// and any tensor kiln does not recognise. Exit status: 0 described, 2 the checkpoint cannot
    /// be opened (the status `kiln render --model` exits with for the same file).
    Inspect(inspect::Args),
    /// List an asset library (`--assets DIR`): each checkpoint, LoRA, embedding and VAE with
    /// the kind and family its tensors say, and whether requests can use it, or why not. Exit
    /// status: 0 listed, 2 the folder cannot be read.
    Assets(assets::Args),
    /// Time one UNet call, a guided step, a VAE decode, the text encoders or whole images on
    /// this machine: seconds per call, achieved GFLOP/s against the measured FMA peak, and the
    /// share of time per family of ops. `--random sd15|sdxl` times full-size random weights
    /// (no download). Exit status: 0 timed, 2 the model or inputs could not be set up.
    Bench(bench::Args),
    /// Rewrite DIR/responses.jsonl (appended in completion order) in the order of REQUESTS,
    /// once every line has its record. Exit status: 0 in order, 1 some line has no record yet,
    /// 2 unreadable requests or journal.
    Sort(sort::Args),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Render(args) => render::run(&args),
        Command::Sort(args) => sort::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Assets(args) => match assets::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("kiln assets: {error:#}");
                ExitCode::from(2)
            }
        },
        Command::Inspect(args) => match inspect::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                // One line, as `kiln render` says it of the same checkpoint (with the same status).
                eprintln!("kiln inspect: {error:#}");
                ExitCode::from(2)
            }
        },
    }
}
