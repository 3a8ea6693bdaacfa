//! A kiln server on 127.0.0.1 (a free port) in this process, and a plain HTTP client.
#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_pipeline::runner::RendererOptions;
use kiln_server::{ServeOptions, Server};
use tokio::sync::oneshot;

/// A repository path.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Options for a server on a free loopback port with `model` (`None`: the demo model).
pub fn options(model: Option<&str>) -> ServeOptions {
    let renderer = RendererOptions { model: model.map(repo), ..RendererOptions::default() };
    ServeOptions { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..ServeOptions::new(renderer) }
}

/// A running server; shut down (gracefully) on drop.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a server and waits until `/readyz` says the model has loaded.
pub fn start(options: ServeOptions) -> Running {
    let (bound, addr) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let server = Server::bind(options).await.unwrap();
            bound.send(server.local_addr().unwrap()).unwrap();
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = addr.recv().unwrap();
    let running = Running { addr, stop: Some(stop), thread: Some(thread) };
    let started = Instant::now();
    while get(&running.url("/readyz")).0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(120), "the server never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts a graceful shutdown (as SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits until the server has stopped.
    pub fn shutdown(mut self) {
        self.begin_shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client that returns every status as a response (no redirects, 4xx and 5xx included).
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into()
}

/// `GET url`: (status, body).
pub fn get(url: &str) -> (u16, String) {
    match agent(Duration::from_secs(30)).get(url).call() {
        Ok(mut response) => (response.status().as_u16(), response.body_mut().read_to_string().unwrap()),
        Err(_) => (0, String::new()),
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `POST url` with a JSON body and optional headers.
pub fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = agent(Duration::from_secs(300)).post(url);
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        request = request.header("Content-Type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap();
    Answer { status, body, retry_after }
}

/// A metric's value from `/metrics` (the sum over every label set when `labels` is empty).
pub fn metric(running: &Running, name: &str, labels: &str) -> f64 {
    let (_, text) = get(&running.url("/metrics"));
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && rest.contains(labels)
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

/// A demo-model request body (SDXL, 2 steps, a fixed seed).
pub fn body(seed: u32, extra: &str) -> String {
    format!(
        r#"{{"prompt": "a kiln in a field", "steps": 2, "cfg_scale": 5, "seed": {seed}, "width": 1024, "height": 1024, "sampler": "K_EULER", "use_refiner": false, "image_encoding": "png"{extra}}}"#
    )
}

/// Copies the folder `from` (a model fixture) to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if std::fs::metadata(entry.path()).unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
