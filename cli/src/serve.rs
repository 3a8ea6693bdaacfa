//! `kiln serve`: OctoAI's image API over HTTP (kiln-server).
//!
//! Exit status: 0 after a clean shutdown (SIGINT or SIGTERM: accepted requests finish first), 2
//! when the server cannot start (address in use, a non-loopback address without a token file,
//! an unreadable token file, no such device).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kiln_pipeline::demo::DEMO_NOTICE;
use kiln_runtime::Device;
use kiln_server::{ServeOptions, serve};

use crate::model_args::ModelArgs;
use crate::render::{bytes, checked_device};

/// Arguments of `kiln serve`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    models: ModelArgs,
    /// cpu, cuda or cuda:N; several (cuda:0,cuda:1) run one engine per GPU on one queue.
    #[arg(long, default_value = "cpu", value_delimiter = ',')]
    device: Vec<Device>,
    /// How long the first request of a batch waits for others with the same batch key, in ms.
    #[arg(long, default_value_t = 10)]
    batch_window_ms: u64,
    /// The most requests waiting to render; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    queue_size: u32,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Bearer tokens, one per line: requests must send `Authorization: Bearer TOKEN`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Listen on a non-loopback address without --token-file.
    #[arg(long)]
    insecure_no_auth: bool,
    /// The largest request body: bytes, or with a K, M or G suffix.
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = bytes)]
    max_body_bytes: u64,
    /// Seconds a client may take to send its request headers.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a client may take to send its body.
    #[arg(long, default_value_t = 60)]
    body_timeout: u64,
    /// Seconds shutdown waits for accepted requests to finish.
    #[arg(long, default_value_t = 120)]
    shutdown_timeout: u64,
}

/// Runs `kiln serve` and returns its exit status.
pub fn run(args: &Args) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kiln serve: {message}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(args: &Args) -> Result<(), String> {
    let devices: Vec<Device> = args.device.iter().map(|&d| checked_device(d)).collect::<Result<_, _>>()?;
    let first = devices.first().copied().unwrap_or(Device::Cpu);
    if args.models.model.is_none() {
        eprintln!("{DEMO_NOTICE}");
    }
    let renderer = args.models.renderer(first);
    let options = ServeOptions {
        devices,
        listen: args.listen,
        token_file: args.token_file.clone(),
        insecure_no_auth: args.insecure_no_auth,
        batch_window: Duration::from_millis(args.batch_window_ms),
        queue_size: args.queue_size as usize,
        max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        ..ServeOptions::new(renderer)
    };
    serve(options).map_err(|e| e.to_string())
}
