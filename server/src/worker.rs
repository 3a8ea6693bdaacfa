//! The render thread: loads the model, then takes batches from the queue, renders each in one
//! engine call and hands every request its outcome. A panic while rendering answers that batch's
//! requests with an internal error and the thread goes on with the next batch.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Instant;

use kiln_pipeline::runner::{
    Batch, Outcome, Prepared, PreparedKey, Renderer, RendererOptions, Stopped, Validator,
};
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::queue::Queue;

/// What a queued request receives: its outcome, or why it has none (an internal error).
pub type Reply = Result<(Prepared, Outcome), String>;

/// A request waiting for the render thread.
pub struct Job {
    /// The request (its id is the server's own, unique).
    pub prepared: Prepared,
    /// Where its outcome goes; closed when the client has gone.
    pub reply: oneshot::Sender<Reply>,
}

/// The queue the HTTP handlers feed.
pub type JobQueue = Queue<PreparedKey, Job>;

/// Starts the render thread; `loaded` receives the validator once the model is loaded, or why
/// it cannot be.
pub fn spawn(
    options: RendererOptions,
    queue: Arc<JobQueue>,
    metrics: Arc<Metrics>,
    loaded: oneshot::Sender<Result<Validator, String>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("kiln-render".into()).spawn(move || {
        let started = Instant::now();
        let mut renderer = match Renderer::load(&options) {
            Ok(renderer) => renderer,
            Err(e) => {
                let _ = loaded.send(Err(e.to_string()));
                return;
            }
        };
        metrics.model_load_seconds.set(started.elapsed().as_secs_f64());
        if loaded.send(Ok(renderer.validator().clone())).is_err() {
            return;
        }
        let stop = AtomicBool::new(false);
        let alive = |job: &Job| !job.reply.is_closed();
        while let Some(jobs) = queue.next_batch(alive, |gone| {
            metrics.abandoned.inc_by(gone.len() as u64);
        }) {
            metrics.queue_depth.set(queue.len() as i64);
            render(&mut renderer, jobs, &metrics, &stop);
        }
    })
}

/// Renders one batch and answers its requests.
fn render(renderer: &mut Renderer, jobs: Vec<Job>, metrics: &Metrics, stop: &AtomicBool) {
    let images: usize = jobs.iter().map(|job| job.prepared.images()).sum();
    let count = jobs.len();
    let mut replies = HashMap::with_capacity(count);
    let mut requests = Vec::with_capacity(count);
    for Job { prepared, reply } in jobs {
        replies.insert(prepared.id.clone(), reply);
        requests.push(prepared);
    }
    let started = Instant::now();
    let rendered = catch_unwind(AssertUnwindSafe(|| renderer.render(requests, &mut |_, _, _| {}, stop)));
    let seconds = started.elapsed().as_secs_f64();
    let mut missing = "the render stopped before this request had an outcome".to_string();
    let batch = match rendered {
        Ok(Ok(batch)) => batch,
        Ok(Err(Stopped { done, .. })) => done,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            eprintln!("kiln serve: rendering a batch of {count} requests panicked: {message}");
            missing = format!("rendering failed: {message}");
            Batch { results: Vec::new(), log: Vec::new() }
        }
    };
    for message in &batch.log {
        eprintln!("kiln serve: {message}");
    }
    metrics.batches.inc();
    metrics.batch_requests.observe(count as f64);
    metrics.batch_images.observe(images as f64);
    let mut rendered_images = 0;
    for (prepared, outcome) in batch.results {
        if let Outcome::Done(done) = &outcome {
            rendered_images += done.pictures.len();
        }
        if let Some(reply) = replies.remove(&prepared.id) {
            let _ = reply.send(Ok((prepared, outcome)));
        }
    }
    metrics.images.inc_by(rendered_images as u64);
    if seconds > 0.0 {
        metrics.images_per_second.set(rendered_images as f64 / seconds);
    }
    for (_, reply) in replies {
        let _ = reply.send(Err(missing.clone()));
    }
}
