//! `kiln merge OUT SHARD_DIRS... --requests FILE`: a sharded run's journals (`kiln render
//! --shard`) combined into `OUT/responses.jsonl` in input order, with saved images linked into
//! `OUT/images`.
//!
//! Exit status: 0 written (every input line answered exactly once), 1 some line has no record or
//! some id more records than lines (each listed; nothing written; rerun those shards), 2 the
//! requests or a journal cannot be read, or the output cannot be written.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_pipeline::runner::{self, Merged, RequestSource};

/// Arguments of `kiln merge`.
#[derive(clap::Args)]
pub struct Args {
    /// The output folder (responses.jsonl and images/ are written there).
    out: PathBuf,
    /// The shards' output folders (DIR/shard-I-of-N from `kiln render --shard`).
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// The requests the shards rendered (`-` for standard input).
    #[arg(long)]
    requests: String,
}

/// The most missing ids listed.
const LISTED: usize = 50;

/// Runs `kiln merge` and returns its exit status.
pub fn run(args: &Args) -> ExitCode {
    let source = RequestSource::from_arg(&args.requests);
    let merged = runner::input::read_lines(&source).map_err(|e| e.to_string()).and_then(|lines| {
        let ids = runner::ordered::input_ids(&lines);
        runner::merge(&args.out, &args.shards, &ids).map_err(|e| e.to_string())
    });
    match merged {
        Ok(Merged::Written { records, images }) => {
            let journal = args.out.join(runner::JOURNAL_FILE);
            println!("{}: {records} records in input order ({images} images linked)", journal.display());
            ExitCode::SUCCESS
        }
        Ok(Merged::Incomplete { missing, surplus }) => {
            eprintln!(
                "kiln merge: nothing written: {} input lines have no record; {} ids have more records than input lines",
                missing.len(),
                surplus.len()
            );
            for (line, id) in missing.iter().take(LISTED) {
                eprintln!("missing: line {line}, id {id:?}");
            }
            for id in surplus.iter().take(LISTED) {
                eprintln!("answered more than once (or not in the input): id {id:?}");
            }
            if missing.len() + surplus.len() > 2 * LISTED {
                eprintln!("(lists cut at {LISTED} each)");
            }
            ExitCode::from(1)
        }
        Err(message) => {
            eprintln!("kiln merge: {message}");
            ExitCode::from(2)
        }
    }
}
