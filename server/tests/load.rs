//! Many clients at once: dynamic batching (each answer exactly its own, each image what the
//! request gets alone), back-pressure, clients that leave, and a graceful shutdown under load.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;

/// A demo-model request (SDXL-shaped but tiny: the cheapest render there is) with its own seed.
fn demo(seed: u32, steps: u32) -> String {
    body(seed, "").replace(r#""steps": 2"#, &format!(r#""steps": {steps}"#))
}

/// Posts `bodies` at once, one client thread each: the answers in order.
fn post_all(url: &str, bodies: Vec<String>) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (url, barrier) = (url.to_string(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                post(&url, &body, &[])
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_clients_share_batches_and_each_gets_exactly_its_own_answer() {
    let mut options = options(None);
    options.renderer.batch_size = 8;
    options.batch_window = Duration::from_millis(250);
    let server = start(options);
    let url = server.url("/generate/sdxl");
    const CLIENTS: u32 = 52;
    let answers = post_all(&url, (0..CLIENTS).map(|i| demo(1000 + i, 2)).collect());
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "client {i}: {}", &answer.body[..answer.body.len().min(300)]);
        assert_eq!(answer.json()["images"][0]["seed"], 1000 + i as u64, "client {i} got another's answer");
    }
    let batches = metric(&server, "kiln_batches_total", "");
    assert_eq!(metric(&server, "kiln_batch_requests_sum", ""), CLIENTS as f64);
    assert!(batches <= (CLIENTS / 2) as f64, "{batches} engine calls for {CLIENTS} requests: no batching");
    // A few of them again, one at a time: the same image as in the batch.
    for i in [0, 17, 51] {
        let alone = post(&url, &demo(1000 + i, 2), &[]);
        assert_eq!(alone.status, 200);
        assert_eq!(
            alone.json()["images"][0]["image_b64"],
            answers[i as usize].json()["images"][0]["image_b64"],
            "client {i}: batched and alone differ"
        );
    }
    assert_eq!(metric(&server, "kiln_batches_total", ""), batches + 3.0);
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_the_server_goes_on() {
    let mut options = options(None);
    options.renderer.batch_size = 4;
    options.queue_size = 8;
    options.batch_window = Duration::from_millis(50);
    let server = start(options);
    let url = server.url("/generate/sdxl");
    const CLIENTS: u32 = 1000;
    let answers = post_all(&url, (0..CLIENTS).map(|i| demo(1 + i, 1)).collect());
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(ok + busy.len(), CLIENTS as usize, "only 200 and 503");
    assert!(ok >= 8 && !busy.is_empty(), "{ok} rendered, {} refused", busy.len());
    for answer in busy {
        assert_eq!(answer.retry_after.as_deref(), Some("1"));
        assert_eq!(answer.json()["detail"], "the queue is full");
    }
    assert_eq!(post(&url, &demo(7, 1), &[]).status, 200, "serving after the rush");
    assert_eq!(metric(&server, "kiln_requests_total", r#"status="503""#), (CLIENTS as usize - ok) as f64);
}

#[test]
fn clients_that_leave_while_queued_or_rendering_cost_nothing_more() {
    let mut options = options(None);
    options.renderer.batch_size = 4;
    // The request waits this long for company: its client gives up first.
    options.batch_window = Duration::from_millis(1500);
    let server = start(options);
    let url = server.url("/generate/sdxl");
    {
        // A client that sends its request, then closes the connection without waiting.
        use std::io::Write;
        let body = demo(5, 2);
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        write!(
            stream,
            "POST /generate/sdxl HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    while metric(&server, "kiln_abandoned_requests_total", "") < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the abandoned request was never dropped");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&server, "kiln_batches_total", ""), 0.0, "nothing rendered for a client that left");
    assert_eq!(post(&url, &demo(6, 2), &[]).status, 200);
    assert_eq!(metric(&server, "kiln_batches_total", ""), 1.0);

    // A client that leaves while its request renders: the render finishes, its answer goes
    // nowhere, and the server goes on.
    let leaver = agent(Duration::from_millis(1500))
        .post(&url)
        .header("Content-Type", "application/json")
        .send(demo(8, 30).as_str());
    assert!(leaver.is_err(), "the client gave up during the render");
    assert_eq!(post(&url, &demo(9, 2), &[]).status, 200);
    assert_eq!(metric(&server, "kiln_batches_total", ""), 3.0, "the abandoned render ran, then the next");
}

#[test]
fn several_devices_share_one_queue() {
    let mut options = options(None);
    options.devices = vec![kiln_runtime::Device::Cpu, kiln_runtime::Device::Cpu];
    options.renderer.batch_size = 2;
    let server = start(options);
    let answers = post_all(&server.url("/generate/sdxl"), (0..6).map(|i| demo(70 + i, 1)).collect());
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "client {i}");
        assert_eq!(answer.json()["images"][0]["seed"], 70 + i as u64);
    }
    assert_eq!(metric(&server, "kiln_batch_requests_sum", ""), 6.0);
}

#[test]
fn shutdown_under_load_finishes_every_accepted_request() {
    let mut options = options(None);
    options.renderer.batch_size = 2;
    options.batch_window = Duration::from_millis(20);
    let mut server = start(options);
    let url = server.url("/generate/sdxl");
    const CLIENTS: u32 = 8;
    let clients = std::thread::spawn(move || post_all(&url, (0..CLIENTS).map(|i| demo(50 + i, 3)).collect()));
    // Every request accepted and queued (or rendering) before the shutdown begins.
    let started = Instant::now();
    while metric(&server, "kiln_queue_depth", "") + 2.0 * metric(&server, "kiln_batches_total", "")
        < CLIENTS as f64 - 2.0
    {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    server.begin_shutdown();
    let answers = clients.join().unwrap();
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "client {i}: {}", &answer.body[..answer.body.len().min(300)]);
        assert_eq!(answer.json()["images"][0]["seed"], 50 + i as u64);
    }
    let addr = server.addr;
    server.shutdown();
    assert!(std::net::TcpStream::connect(addr).is_err(), "no longer listening");
}
