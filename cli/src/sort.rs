//! `kiln sort REQUESTS --out DIR`: rewrites `DIR/responses.jsonl` (written in completion order)
//! in the order of REQUESTS, once every line has its record.
//!
//! Exit status: 0 when the journal is in input order (rewritten, or already so), 1 when some
//! line has no record yet (the file is left as it is), 2 when the requests or the journal cannot
//! be read, the rewrite fails (the file is left as it is) or a render is writing to the folder:
//! sort takes the folder's lock ([`runner::lock`]), as a rename over a journal being appended to
//! would lose lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kiln_pipeline::runner::{self, OutDirLock, RequestSource, Sorted};

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
        let _lock = lock(&args.out)?;
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

/// The output folder's lock, when it is there to take: a missing folder is left to the journal's
/// own error, which names the file.
fn lock(out: &Path) -> Result<Option<OutDirLock>, String> {
    if !out.is_dir() {
        return Ok(None);
    }
    OutDirLock::acquire(out).map(Some).map_err(|e| e.to_string())
}
