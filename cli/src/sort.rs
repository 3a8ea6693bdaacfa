//! `kiln sort REQUESTS --out DIR`: rewrites `DIR/responses.jsonl` (written in completion order)
//! in the order of REQUESTS, once every line has its record.
//!
//! Exit status: 0 when the journal is in input order (rewritten, or already so), 1 when some
//! line has no record yet (the file is left as it is), 2 when the requests or the journal cannot
//! be read or the rewrite fails (the file is left as it is).

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_pipeline::runner::{self, RequestSource, Sorted};

/// Arguments of `kiln sort`.
#[derive(clap::Args)]
pub struct Args {
    /// The requests the output folder was rendered from (`-` for standard input).
    requests: String,
    /// The output folder holding responses.jsonl.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `kiln sort` and returns its exit status.
pub fn run(args: &Args) -> ExitCode {
    let source = RequestSource::from_arg(&args.requests);
    let sorted = runner::input::read_lines(&source).map_err(|e| e.to_string()).and_then(|lines| {
        let ids = runner::ordered::input_ids(&lines);
        runner::sort_journal(&args.out, &ids).map_err(|e| e.to_string())
    });
    let journal = args.out.join(runner::JOURNAL_FILE);
    match sorted {
        Ok(sorted @ Sorted::Incomplete { .. }) => {
            eprintln!("kiln sort: {}: {sorted}", journal.display());
            ExitCode::from(1)
        }
        Ok(sorted) => {
            println!("{}: {sorted}", journal.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("kiln sort: {message}");
            ExitCode::from(2)
        }
    }
}
