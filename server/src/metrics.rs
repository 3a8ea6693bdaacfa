//! `GET /metrics`: Prometheus' text format.

use std::sync::atomic::AtomicU64;

use kiln_runtime::Device;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A request's engine (the path's) and the status answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `sdxl`, `sd`, `ssd`, `controlnet-sdxl`, or `unknown` for a path kiln does not serve.
    pub engine: String,
    /// The HTTP status.
    pub status: u16,
}

/// A request's engine.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabel {
    /// As [`RequestLabels::engine`].
    pub engine: String,
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by engine and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from a request's arrival to its answer, by engine.
    pub latency: Family<EngineLabel, Histogram>,
    /// Requests waiting for the render thread.
    pub queue_depth: Gauge,
    /// Engine calls made.
    pub batches: Counter,
    /// Requests per engine call.
    pub batch_requests: Histogram,
    /// Images per engine call.
    pub batch_images: Histogram,
    /// Images rendered.
    pub images: Counter,
    /// The last batch's images per second of render time.
    pub images_per_second: Gauge<f64, AtomicU64>,
    /// Queued requests dropped because their client had gone.
    pub abandoned: Counter,
    /// Seconds the default model took to load.
    pub model_load_seconds: Gauge<f64, AtomicU64>,
    /// Free memory on the render device, read at each scrape.
    device_free_bytes: Gauge,
    device: Device,
}

impl Metrics {
    /// Empty metrics for a server rendering on `device`.
    pub fn new(device: Device) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("kiln_requests", "Requests answered, by engine and HTTP status", requests.clone());
        let latency = Family::<EngineLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 16))
        });
        registry.register("kiln_request_duration_seconds", "Seconds from arrival to answer", latency.clone());
        let queue_depth = Gauge::default();
        registry.register("kiln_queue_depth", "Requests waiting for the render thread", queue_depth.clone());
        let batches = Counter::default();
        registry.register("kiln_batches", "Engine calls made", batches.clone());
        let batch_requests = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register("kiln_batch_requests", "Requests per engine call", batch_requests.clone());
        let batch_images = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register("kiln_batch_images", "Images per engine call", batch_images.clone());
        let images = Counter::default();
        registry.register("kiln_images", "Images rendered", images.clone());
        let images_per_second = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "kiln_images_per_second",
            "The last engine call's images per second of render time",
            images_per_second.clone(),
        );
        let abandoned = Counter::default();
        registry.register(
            "kiln_abandoned_requests",
            "Queued requests dropped before rendering because their client had gone",
            abandoned.clone(),
        );
        let model_load_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "kiln_model_load_seconds",
            "Seconds the default model took to load",
            model_load_seconds.clone(),
        );
        let device_free_bytes = Gauge::default();
        registry.register(
            "kiln_device_free_memory_bytes",
            "Free memory on the render device",
            device_free_bytes.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            queue_depth,
            batches,
            batch_requests,
            batch_images,
            images,
            images_per_second,
            abandoned,
            model_load_seconds,
            device_free_bytes,
            device,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        if let Some(free) = self.device.free_memory() {
            self.device_free_bytes.set(i64::try_from(free).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}
