//! kiln-server: `kiln serve`, OctoAI's image API over HTTP.
//!
//! `POST /generate/{engine}` takes OctoAI's `ImageGenerationRequest` and answers its
//! `ImageGenerationResponse`, so OctoAI client code works against kiln by changing the base URL.
//! Requests arriving close together with the same batch key (model, assets, size, sampler,
//! steps, mode) render in one engine call ([`queue`]); each image equals what the request would
//! get alone. The request side (validation, error bodies, response records) is kiln-pipeline's,
//! shared with `kiln render`; this crate adds only HTTP.
//!
//! - [`Server::bind`] / [`Server::run`]: listen, serve until a shutdown future resolves, then
//!   stop accepting, finish every accepted request (within [`ServeOptions::shutdown_timeout`]),
//!   and stop the render thread;
//! - [`routes`]: the endpoints and their statuses;
//! - [`auth`]: bearer tokens from `--token-file`;
//! - [`queue`]: the dynamic-batching queue (bounded, fair across keys);
//! - [`metrics`]: `/metrics` in Prometheus' text format.
#![deny(missing_docs)]

pub mod auth;
pub mod metrics;
pub mod queue;
pub mod routes;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use kiln_pipeline::runner::RendererOptions;
use kiln_runtime::Device;
use tokio::net::{TcpListener, TcpSocket};
use tower::Service;

use auth::{TokenFileError, Tokens};
use metrics::Metrics;
use queue::Queue;
use routes::AppState;

/// What `kiln serve` was asked to do.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The model, library, device, dtype and batch size.
    pub renderer: RendererOptions,
    /// Render on each of these devices, one engine (and render thread) per device, all taking
    /// batches from one queue; empty: `renderer.device` alone.
    pub devices: Vec<Device>,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Bearer tokens, one per line; `None`: no authentication.
    pub token_file: Option<PathBuf>,
    /// Listen on a non-loopback address without authentication.
    pub insecure_no_auth: bool,
    /// How long the first request of a batch waits for company.
    pub batch_window: Duration,
    /// The most requests waiting; more are refused with 503.
    pub queue_size: usize,
    /// The largest body accepted.
    pub max_body_bytes: usize,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// How long a client may take to send its body.
    pub body_timeout: Duration,
    /// How long shutdown waits for accepted requests to finish.
    pub shutdown_timeout: Duration,
}

impl ServeOptions {
    /// Defaults around `renderer`: 127.0.0.1:8080, no tokens, a 10 ms window, 256 queued
    /// requests, 64 MiB bodies, 10 s for headers, 60 s for a body, 120 s to shut down.
    pub fn new(renderer: RendererOptions) -> ServeOptions {
        ServeOptions {
            renderer,
            devices: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: None,
            insecure_no_auth: false,
            batch_window: Duration::from_millis(10),
            queue_size: 256,
            max_body_bytes: 64 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(120),
        }
    }
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No token file, and the address is not a loopback one.
    #[error(
        "refusing to listen on {0} without authentication: pass --token-file FILE (bearer tokens, one per \
         line), listen on 127.0.0.1, or pass --insecure-no-auth"
    )]
    OpenToNetwork(SocketAddr),
    /// The token file cannot be used.
    #[error(transparent)]
    Tokens(#[from] TokenFileError),
    /// The address cannot be bound, or a socket fails.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The render thread cannot start.
    #[error("cannot start the render thread: {0}")]
    Thread(std::io::Error),
}

/// A bound server, loading its model on the render thread.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    workers: Vec<std::thread::JoinHandle<()>>,
    options: ServeOptions,
}

impl Server {
    /// Checks the authentication policy, binds the address and starts loading the model
    /// (`/readyz` answers 200 once it has loaded).
    pub async fn bind(options: ServeOptions) -> Result<Server, ServeError> {
        let tokens = match &options.token_file {
            Some(path) => Some(Tokens::read(path)?),
            None if options.listen.ip().is_loopback() || options.insecure_no_auth => None,
            None => return Err(ServeError::OpenToNetwork(options.listen)),
        };
        let addr = options.listen;
        let listener = listen(addr).map_err(|source| ServeError::Listen { addr, source })?;
        let queue =
            Arc::new(Queue::new(options.queue_size, options.renderer.batch_size, options.batch_window));
        let metrics = Arc::new(Metrics::new(options.renderer.device));
        let state = Arc::new(AppState {
            queue: queue.clone(),
            validator: OnceLock::new(),
            load_error: OnceLock::new(),
            metrics: metrics.clone(),
            tokens,
            max_body_bytes: options.max_body_bytes,
            body_timeout: options.body_timeout,
            shutting_down: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
        });
        let devices =
            if options.devices.is_empty() { vec![options.renderer.device] } else { options.devices.clone() };
        let mut workers = Vec::with_capacity(devices.len());
        for device in devices {
            let (loaded, on_load) = tokio::sync::oneshot::channel();
            let renderer = RendererOptions { device, ..options.renderer.clone() };
            workers.push(
                worker::spawn(renderer, queue.clone(), metrics.clone(), loaded)
                    .map_err(ServeError::Thread)?,
            );
            let load_state = state.clone();
            tokio::spawn(async move {
                // Ready once the first engine has loaded; every engine validates alike.
                match on_load.await {
                    Ok(Ok(validator)) => {
                        eprintln!("kiln serve: model loaded on {device}");
                        let _ = load_state.validator.set(validator);
                    }
                    Ok(Err(error)) => {
                        eprintln!("kiln serve: the model cannot load on {device}: {error}");
                        let _ = load_state.load_error.set(error);
                    }
                    Err(_) => {
                        let _ = load_state.load_error.set(format!("the render thread for {device} ended"));
                    }
                }
            });
        }
        Ok(Server { listener, state, workers, options })
    }

    /// The address bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether requests need a bearer token.
    pub fn requires_auth(&self) -> bool {
        self.state.tokens.is_some()
    }

    /// Serves until `shutdown` resolves, then stops accepting connections, lets every accepted
    /// request finish (at most [`ServeOptions::shutdown_timeout`]) and stops the render thread.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server { listener, state, workers, options } = self;
        let router = routes::router(state.clone());
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment rather than spin.
                        eprintln!("kiln serve: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let (stream, client) = match with_watch(stream) {
                Ok(pair) => pair,
                Err(e) => {
                    eprintln!("kiln serve: cannot set up a connection: {e}");
                    continue;
                }
            };
            let router = router.clone();
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(client.clone());
                    let mut router = router.clone();
                    async move { router.call(request).await }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                // A client that goes away or sends garbage ends only its own connection.
                let _ = connection.await;
            });
        }
        drop(listener);
        state.shutting_down.store(true, Ordering::Relaxed);
        eprintln!("kiln serve: shutting down: finishing accepted requests");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(options.shutdown_timeout) => {
                eprintln!("kiln serve: shutdown deadline of {:?} passed with requests unfinished", options.shutdown_timeout);
            }
        }
        state.queue.close();
        let _ = tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join()))).await;
        eprintln!("kiln serve: stopped");
        Ok(())
    }
}

/// Connections the kernel holds for `accept` (Linux caps it at `net.core.somaxconn`). tokio's
/// default of 128 is too few for a burst of clients against a busy server: the kernel then
/// resets connections instead of letting the server answer them (503 when the queue is full).
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with room for [`LISTEN_BACKLOG`] waiting connections.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The connection's stream and a watch on its socket (a second handle to it), so that a handler
/// waiting for a render can tell that its client has gone: HTTP/1 connections are not read while
/// a response is pending, so nothing else would notice.
fn with_watch(
    stream: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, routes::ClientSocket)> {
    let stream = stream.into_std()?;
    let watch = stream.try_clone()?;
    watch.set_nonblocking(true)?;
    Ok((tokio::net::TcpStream::from_std(stream)?, routes::ClientSocket(Arc::new(watch))))
}

/// Runs `kiln serve` on a new Tokio runtime until SIGINT or SIGTERM.
pub fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ServeError::Listen { addr: options.listen, source })?;
    runtime.block_on(async move {
        let server = Server::bind(options).await?;
        let addr = server.local_addr().map_err(|source| ServeError::Listen { addr: server.options.listen, source })?;
        if !server.requires_auth() {
            eprintln!(
                "kiln serve: WARNING: no --token-file: anyone who can reach {addr} can render (and use its CPU or GPU)"
            );
        }
        eprintln!("kiln serve: listening on http://{addr} (POST /generate/{{sdxl,sd,ssd,controlnet-sdxl}})");
        server.run(shutdown_signal()).await
    })
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
