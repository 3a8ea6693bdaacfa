//! The HTTP routes: `POST /generate/{engine}`, `GET /healthz`, `/readyz`, `/metrics` and
//! `/openapi.json`.
//!
//! A generate request goes through the same code as a line of `kiln render`: [`parse_for_engine`],
//! then [`Validator::prepare`], then the render thread, then [`encode_response`]; a 422 body is
//! byte for byte the `error` of the runner's error record for the same line. Other failures
//! answer as FastAPI does (`{"detail": "..."}`), with the status that says what happened: 401
//! (no or wrong token, without saying which), 404 (an engine kiln does not serve), 408 (the body
//! came too slowly), 413 (body too large), 415 (not JSON), 503 with `Retry-After` (the model is
//! loading, the queue is full, or the server is shutting down), 500 with an `error_id` that the
//! server's log line carries too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kiln_pipeline::request::{EngineName, RequestError, parse_for_engine};
use kiln_pipeline::runner::records::{self, RENDER_FAILED};
use kiln_pipeline::runner::{Outcome, Refusal, Validator, encode_response};
use serde_json::json;
use tokio::sync::oneshot;

use crate::auth::Tokens;
use crate::metrics::{EngineLabel, Metrics, RequestLabels};
use crate::queue::Refused;
use crate::worker::{Job, JobQueue};

/// The OpenAPI document of what kiln serves (`tools/make_openapi.py`).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What every handler shares.
pub struct AppState {
    /// Requests waiting for the render thread.
    pub queue: Arc<JobQueue>,
    /// Set once the model has loaded.
    pub validator: OnceLock<Validator>,
    /// Set when the model cannot load.
    pub load_error: OnceLock<String>,
    /// The counters and histograms of `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The accepted bearer tokens; `None`: no authentication.
    pub tokens: Option<Tokens>,
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a body may take to arrive.
    pub body_timeout: Duration,
    /// Set when shutdown begins (`/readyz` then answers 503).
    pub shutting_down: AtomicBool,
    /// Numbers requests (their ids inside the server, and error ids).
    pub next_id: AtomicU64,
}

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/generate/{engine}", post(generate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { ([(CONTENT_TYPE, "application/json")], OPENAPI) }))
        .fallback(|| async { detail(StatusCode::NOT_FOUND, "Not Found") })
        .with_state(state)
}

/// `{"detail": message}` with `status`, as FastAPI's HTTPException answers.
fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "detail": message.into() }))).into_response()
}

/// 503 with `Retry-After: seconds`.
fn unavailable(message: &str, seconds: u32) -> Response {
    let mut response = detail(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// 422 with OctoAI's validation body, serialised as the runner's error records serialise it.
fn unprocessable(error: &RequestError) -> Response {
    let body = serde_json::to_vec(error).expect("a RequestError serialises");
    (StatusCode::UNPROCESSABLE_ENTITY, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// 500 with an error id; the id and the message go to the log.
fn internal(error_id: u64, request_id: &str, message: &str) -> Response {
    let error_id = format!("kiln-{error_id}");
    eprintln!("kiln serve: error {error_id} (request id {request_id:?}): {message}");
    let body = json!({ "detail": "internal error: the server's log has the details", "error_id": error_id });
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        return unavailable("shutting down", 5);
    }
    match (state.validator.get(), state.load_error.get()) {
        (Some(_), _) => "ready\n".into_response(),
        (None, Some(error)) => {
            detail(StatusCode::INTERNAL_SERVER_ERROR, format!("the model cannot load: {error}"))
        }
        (None, None) => unavailable("the model is loading", 5),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.queue_depth.set(state.queue.len() as i64);
    let text = state.metrics.encode();
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// `POST /generate/{engine}`: answers, then counts the answer by engine and status.
async fn generate(
    State(state): State<Arc<AppState>>,
    Path(engine): Path<String>,
    client: Option<Extension<ClientSocket>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let arrived = Instant::now();
    let served = EngineName::ALL.into_iter().find(|e| e.as_str() == engine);
    let label = served.map_or("unknown", EngineName::as_str).to_string();
    let response = answer(&state, served, &engine, &headers, body, client.map(|Extension(c)| c)).await;
    let labels = RequestLabels { engine: label.clone(), status: response.status().as_u16() };
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .latency
        .get_or_create(&EngineLabel { engine: label })
        .observe(arrived.elapsed().as_secs_f64());
    response
}

/// A second handle to a connection's socket, put in each request's extensions.
#[derive(Clone, Debug)]
pub struct ClientSocket(pub Arc<std::net::TcpStream>);

/// nginx's "client closed request": counted in the metrics, never seen by the client.
const CLIENT_GONE: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// How often a waiting handler looks whether its client is still there.
const CLIENT_CHECK: Duration = Duration::from_millis(100);

/// `outcome`, or `None` once the client's socket is closed (end of stream or an error; bytes
/// waiting, such as a pipelined request, mean it is still there).
async fn unless_gone<T>(
    outcome: oneshot::Receiver<T>,
    client: Option<ClientSocket>,
) -> Option<Result<T, oneshot::error::RecvError>> {
    let Some(ClientSocket(socket)) = client else { return Some(outcome.await) };
    let mut outcome = std::pin::pin!(outcome);
    loop {
        tokio::select! {
            result = &mut outcome => return Some(result),
            () = tokio::time::sleep(CLIENT_CHECK) => {
                match socket.peek(&mut [0u8; 1]) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return None,
                }
            }
        }
    }
}

async fn answer(
    state: &AppState,
    served: Option<EngineName>,
    engine: &str,
    headers: &HeaderMap,
    body: Body,
    client: Option<ClientSocket>,
) -> Response {
    if let Some(tokens) = &state.tokens
        && !tokens.accepts(headers.get(AUTHORIZATION).map(HeaderValue::as_bytes))
    {
        let mut response = detail(StatusCode::UNAUTHORIZED, "Not authenticated");
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let Some(engine) = served else {
        let served: Vec<&str> = EngineName::ALL.iter().map(|e| e.as_str()).collect();
        return detail(
            StatusCode::NOT_FOUND,
            format!(
                "kiln does not serve the engine {engine:?}; it serves /generate/{{{}}}",
                served.join(",")
            ),
        );
    };
    if let Some(kind) = headers.get(CONTENT_TYPE)
        && !is_json(kind)
    {
        return detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        );
    }
    let Some(validator) = state.validator.get() else {
        return match state.load_error.get() {
            Some(error) => {
                detail(StatusCode::INTERNAL_SERVER_ERROR, format!("the model cannot load: {error}"))
            }
            None => unavailable("the model is loading", 5),
        };
    };
    let bytes = match read_body(body, state.max_body_bytes, state.body_timeout).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let number = state.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => return unprocessable(&records::not_utf8(&format!("the body is not UTF-8 text: {e}"))),
    };
    let line = parse_for_engine(text, number as usize, Some(engine));
    let request = match line.request {
        Ok(request) => request,
        Err(error) => return unprocessable(&error),
    };
    let prepared = match validator.prepare(number.to_string(), request) {
        Ok(prepared) => prepared,
        Err(Refusal::Invalid(error)) => return unprocessable(&error),
        Err(Refusal::Unusable { checkpoint, reason }) => {
            return internal(
                number,
                &line.id,
                &format!("cannot use the checkpoint {}: {reason}", checkpoint.display()),
            );
        }
    };
    let (reply, outcome) = oneshot::channel();
    let (key, images) = (prepared.key(), prepared.images());
    match state.queue.submit(key, images, Job { prepared, reply }) {
        Ok(()) => state.metrics.queue_depth.set(state.queue.len() as i64),
        Err(Refused::Full) => return unavailable("the queue is full", 1),
        Err(Refused::Closed) => return unavailable("shutting down", 5),
    };
    let Some(outcome) = unless_gone(outcome, client).await else {
        // The receiver is dropped: the render thread drops the request unless it already runs.
        return detail(CLIENT_GONE, "the client closed the connection");
    };
    match outcome {
        Err(_) => internal(number, &line.id, "the render thread dropped the request"),
        Ok(Err(message)) => internal(number, &line.id, &message),
        Ok(Ok((prepared, Outcome::Done(done)))) => {
            let encoded = tokio::task::spawn_blocking(move || {
                encode_response(&prepared, &done).map(|(response, _)| serde_json::to_vec(&response.body()))
            })
            .await;
            match encoded {
                Ok(Ok(Ok(body))) => {
                    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
                }
                Ok(Ok(Err(e))) => internal(number, &line.id, &format!("cannot write the response: {e}")),
                Ok(Err(error)) => failed(number, &line.id, &error),
                Err(e) => internal(number, &line.id, &format!("encoding the images failed: {e}")),
            }
        }
        Ok(Ok((_, Outcome::Failed(error)))) => failed(number, &line.id, &error),
        Ok(Ok((prepared, Outcome::Unusable(reason)))) => {
            let message = format!("cannot use the checkpoint {}: {reason}", prepared.checkpoint().display());
            internal(number, &line.id, &message)
        }
    }
}

/// A request that failed after validation: 422 when a field can fix it (an image that does not
/// decode, an asset that cannot be applied), 500 when nothing in the request can (a failed
/// render, type `render_failed` on the body).
fn failed(number: u64, request_id: &str, error: &RequestError) -> Response {
    let internal_only = error.detail.iter().all(|e| e.kind == RENDER_FAILED && e.loc.len() == 1);
    if internal_only { internal(number, request_id, &error.to_string()) } else { unprocessable(error) }
}

/// Whether a Content-Type names JSON (`application/json`, parameters allowed).
fn is_json(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else { return false };
    let mime = value.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
}

/// The body, at most `limit` bytes, arriving within `timeout`.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<axum::body::Bytes, Response> {
    let too_large =
        || detail(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {limit} bytes"));
    // A Content-Length over the limit is refused before a byte of the body is read.
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(detail(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"))),
        Err(_) => {
            Err(detail(StatusCode::REQUEST_TIMEOUT, format!("the body did not arrive within {timeout:?}")))
        }
    }
}
