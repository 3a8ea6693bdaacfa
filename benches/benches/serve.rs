//! `kiln serve` under load on this machine, with the demo model on the CPU: requests per second
//! and latency percentiles at 1, 8 and 32 concurrent clients, with dynamic batching (batch 8,
//! 10 ms window) and without (batch 1); and what the HTTP path costs per request beyond
//! rendering, against `kiln render`'s library path doing the same work.
//!
//! Run: `cargo bench -p kiln-benches --bench serve [-- --requests N]` (default 64 per setting).
//! Every request is the demo model at 1024², 1 step, no guidance, JPEG: the cheapest real render.
//! "Overhead" is each request's round trip less the `prediction_time_ms` its response reports
//! (the render's wall time), for one client with no batching window: parsing, validation,
//! queueing, JPEG and base64 encoding, the response's transfer. The same is measured for the
//! library path (`Renderer::render` + `encode_response`, what `kiln render` does per request
//! before journaling): its wall time less the reported render time.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use kiln_pipeline::request::{EngineName, parse_for_engine};
use kiln_pipeline::runner::{Outcome, Renderer, RendererOptions, encode_response};
use kiln_server::{ServeOptions, Server};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn body(seed: usize) -> String {
    format!(
        r#"{{"prompt": "a kiln in a field at dusk", "steps": 1, "cfg_scale": 1, "seed": {}, "width": 1024, "height": 1024, "sampler": "K_EULER", "use_refiner": false}}"#,
        seed + 1
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Starts a server on a free port: its address and a function that stops it.
fn start(batch_size: usize, window_ms: u64) -> (SocketAddr, impl FnOnce()) {
    let renderer = RendererOptions { batch_size, ..RendererOptions::default() };
    let options = ServeOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        batch_window: Duration::from_millis(window_ms),
        queue_size: 1024,
        ..ServeOptions::new(renderer)
    };
    let (bound, addr) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let server = Server::bind(options).await.unwrap();
            bound.send(server.local_addr().unwrap()).unwrap();
            server.run(async move { drop(stopped.await) }).await.unwrap();
        });
    });
    let addr = addr.recv().unwrap();
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    while !agent.get(&format!("http://{addr}/readyz")).call().is_ok_and(|r| r.status() == 200) {
        std::thread::sleep(Duration::from_millis(20));
    }
    (addr, move || {
        let _ = stop.send(());
        thread.join().unwrap();
    })
}

/// `requests` requests from `clients` clients, each sending its share back to back: (wall
/// seconds, each request's (round trip, reported render) in ms).
fn load(addr: SocketAddr, clients: usize, requests: usize) -> (f64, Vec<(f64, f64)>) {
    let barrier = Arc::new(Barrier::new(clients));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder().build().new_agent();
                let url = format!("http://{addr}/generate/sdxl");
                barrier.wait();
                let mut times = Vec::new();
                for i in (c..requests).step_by(clients) {
                    let sent = Instant::now();
                    let mut response =
                        agent.post(&url).header("Content-Type", "application/json").send(body(i)).unwrap();
                    let text = response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap();
                    let round_trip = sent.elapsed().as_secs_f64() * 1e3;
                    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                    times.push((round_trip, json["prediction_time_ms"].as_f64().unwrap()));
                }
                times
            })
        })
        .collect();
    let times = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    (started.elapsed().as_secs_f64(), times)
}

fn summary(name: &str, wall: f64, times: &[(f64, f64)]) {
    let mut latency: Vec<f64> = times.iter().map(|t| t.0).collect();
    latency.sort_by(f64::total_cmp);
    println!(
        "{name:<34} {:>6.2} req/s   p50 {:>7.0} ms   p99 {:>7.0} ms   ({} requests, {wall:.1} s)",
        times.len() as f64 / wall,
        percentile(&latency, 0.5),
        percentile(&latency, 0.99),
        times.len()
    );
}

/// The library path, one request at a time: each request's (wall, reported render) in ms.
fn library(requests: usize) -> Result<Vec<(f64, f64)>, Error> {
    let mut renderer = Renderer::load(&RendererOptions { batch_size: 1, ..RendererOptions::default() })?;
    let stop = AtomicBool::new(false);
    let mut times = Vec::new();
    for i in 0..requests {
        let started = Instant::now();
        let line = parse_for_engine(&body(i), i + 1, Some(EngineName::Sdxl));
        let prepared = renderer
            .validator()
            .prepare(line.id, line.request.map_err(|e| e.to_string())?)
            .map_err(|e| format!("{e:?}"))?;
        let batch = renderer.render(vec![prepared], &mut |_, _, _| {}, &stop).map_err(|_| "stopped")?;
        let (prepared, Outcome::Done(done)) = &batch.results[0] else { return Err("render failed".into()) };
        let (response, _) = encode_response(prepared, done).map_err(|e| e.to_string())?;
        let _line = serde_json::to_string(&response)?;
        times.push((started.elapsed().as_secs_f64() * 1e3, done.prediction_time_ms));
    }
    Ok(times)
}

fn overhead(name: &str, times: &[(f64, f64)]) {
    let mut extra: Vec<f64> = times.iter().map(|(total, render)| total - render).collect();
    extra.sort_by(f64::total_cmp);
    let mut render: Vec<f64> = times.iter().map(|t| t.1).collect();
    render.sort_by(f64::total_cmp);
    println!(
        "{name:<34} beyond rendering: median {:>6.1} ms (p10 {:.1}, p90 {:.1}); render median {:.0} ms",
        percentile(&extra, 0.5),
        percentile(&extra, 0.1),
        percentile(&extra, 0.9),
        percentile(&render, 0.5)
    );
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let requests = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(64), |n| n.parse())?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "kiln serve, demo model, CPU ({cpu}, {} threads), {requests} requests per setting",
        std::thread::available_parallelism()?
    );

    // The HTTP path's own cost, then the library path's, one request at a time.
    let (addr, stop) = start(1, 0);
    let _ = load(addr, 1, 2); // warm-up
    let (wall, times) = load(addr, 1, requests.min(32));
    summary("http, 1 client, no window", wall, &times);
    overhead("http, 1 client", &times);
    stop();
    overhead("library (kiln render's path)", &library(requests.min(32))?);

    for (batch, window, label) in [(1, 0, "no batching"), (8, 10, "batching (8, 10 ms)")] {
        let (addr, stop) = start(batch, window);
        let _ = load(addr, 1, 2);
        for clients in [1, 8, 32] {
            let (wall, times) = load(addr, clients, requests.max(clients));
            summary(&format!("{label}, {clients} clients"), wall, &times);
        }
        stop();
    }
    Ok(())
}
