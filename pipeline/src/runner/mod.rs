//! The JSONL batch runner behind `kiln render`: OctoAI requests in, one response line per request
//! out, resumable after a kill.
//!
//! - [`input`]: the requests file or standard input, as numbered lines;
//! - [`journal`]: `DIR/responses.jsonl`, appended one flushed line per request, read back to resume;
//! - [`batch`]: which pending requests share one engine call;
//! - [`assets`]: `--assets DIR/checkpoints/NAME` lookup and file names for saved images;
//! - [`progress`]: the progress bar and the end-of-run summary.

pub mod assets;
pub mod batch;
pub mod input;
pub mod journal;
pub mod progress;
