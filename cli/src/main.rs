//! The `kiln` command.

mod inspect;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kiln", version, about = "Stable Diffusion 1.5 and SDXL rendering on CUDA and CPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a JSONL file of OctoAI-style requests.
    Render {
        /// The requests, one JSON object per line (`-` for standard input).
        requests: String,
        /// Directory for responses.jsonl and images.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Describe a checkpoint: format, family, each component's size, parameters and dtypes,
    /// and any tensor kiln does not recognise.
    Inspect(inspect::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Render { .. } => {
            anyhow::bail!("`kiln render` is not implemented yet: it lands with the pipeline issue")
        }
        Command::Inspect(args) => inspect::run(&args),
    }
}
