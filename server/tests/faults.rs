//! Bad clients and failures: oversized and slow bodies, slow headers, wrong content types, a
//! decompression bomb, a checkpoint that cannot load. Each gets its status, and the server
//! keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;

/// Writes `head` (and `body`) on a new connection and reads until the server answers and closes,
/// or `wait` passes: (what was read, how long it took).
fn raw(server: &Running, head: &str, body: &[u8], wait: Duration) -> (String, Duration) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

fn still_serving(server: &Running) {
    assert_eq!(get(&server.url("/healthz")).0, 200);
}

#[test]
fn bodies_too_large_slow_or_not_json_get_their_status() {
    let mut options = options(None);
    options.max_body_bytes = 64 << 10;
    options.header_timeout = Duration::from_secs(1);
    options.body_timeout = Duration::from_secs(1);
    let server = start(options);
    let url = server.url("/generate/sdxl");

    // Larger than --max-body-bytes: 413, sent or only announced (100 MB, never sent).
    let large = body(1, &format!(r#", "negative_prompt": "{}""#, "x".repeat(100 << 10)));
    let answer = post(&url, &large, &[]);
    assert_eq!(answer.status, 413, "{}", answer.body);
    let head = "POST /generate/sdxl HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n";
    let (answer, took) = raw(&server, head, b"{", Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(took < Duration::from_secs(5), "answered without waiting for 100 MB: {took:?}");

    // Not JSON.
    for kind in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let answer = post(&url, &body(1, ""), &[("Content-Type", kind)]);
        assert_eq!(answer.status, 415, "{kind}");
    }

    // Headers that never end (slow loris): the connection is closed after --header-timeout.
    let (answer, took) =
        raw(&server, "POST /generate/sdxl HTTP/1.1\r\nHost: kiln\r\n", b"", Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "still open after {took:?}: {answer}");
    // A body that stops arriving: 408 after --body-timeout.
    let head = "POST /generate/sdxl HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n";
    let (answer, took) = raw(&server, head, br#"{"prompt": "#, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Garbage instead of HTTP.
    let (answer, _) = raw(&server, "\x16\x03\x01 not http at all\r\n\r\n", b"", Duration::from_secs(5));
    assert!(!answer.contains("200 OK"), "{answer}");
    still_serving(&server);
    assert_eq!(post(&url, &body(2, ""), &[]).status, 200, "a good request after the bad ones");
}

/// CRC-32 (IEEE), for the PNG chunk patched below.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn a_decompression_bomb_is_refused_on_its_field() {
    // A small PNG whose header claims 60000 x 60000 pixels (10.8 GB of RGB once inflated).
    let mut png = Vec::new();
    image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 31) as u8, (y * 17) as u8, 200]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..20].copy_from_slice(&60000u32.to_be_bytes());
    png[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let server = start(options(None));
    let bomb = STANDARD.encode(&png);
    let answer = post(&server.url("/generate/sdxl"), &body(3, &format!(r#", "init_image": "{bomb}""#)), &[]);
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.json()["detail"][0]["loc"], serde_json::json!(["body", "init_image"]));
    still_serving(&server);
}

#[test]
fn a_checkpoint_that_cannot_load_is_a_500_with_an_error_id_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    // The tiny SD 1.5 single file cut short: its header is intact, its weights are not all there.
    let whole = std::fs::read(repo("fixtures/tiny/sd15.safetensors")).unwrap();
    std::fs::write(checkpoints.join("broken.safetensors"), &whole[..whole.len() * 2 / 3]).unwrap();
    let mut options = options(None);
    options.renderer.assets = Some(dir.path().to_path_buf());
    let server = start(options);
    let url = server.url("/generate/sd");
    let request = r#"{"prompt": "x", "steps": 2, "width": 512, "height": 512, "checkpoint": "broken"}"#;
    let answer = post(&url, request, &[]);
    assert_eq!(answer.status, 500, "{}", answer.body);
    let error_id = answer.json()["error_id"].as_str().unwrap().to_string();
    assert!(error_id.starts_with("kiln-"), "{error_id}");
    // Twice: the same answer, and a new id.
    let again = post(&url, request, &[]);
    assert_eq!(again.status, 500);
    assert_ne!(again.json()["error_id"].as_str().unwrap(), error_id);
    still_serving(&server);
    assert_eq!(post(&server.url("/generate/sdxl"), &body(4, ""), &[]).status, 200);
}

/// The tiny SD 1.5 folder copied into `library/checkpoints/poisoned` with one UNet weight set to
/// NaN (f16), so that it loads (with the weight check off) and every render fails.
fn poisoned_checkpoint(library: &std::path::Path) {
    let model = library.join("checkpoints/poisoned");
    copy_dir(&repo("fixtures/tiny/sd15"), &model);
    let path = model.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let (_, dtype, _, data) = tensors.iter_mut().find(|t| t.0 == "conv_in.weight").unwrap();
    assert_eq!(*dtype, safetensors::Dtype::F16);
    let middle = data.len() / 4 * 2;
    data[middle..middle + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, header.metadata().clone(), &path).unwrap();
}

#[test]
fn a_render_that_fails_is_a_500_with_an_error_id_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    poisoned_checkpoint(dir.path());
    let mut options = options(None);
    options.renderer.assets = Some(dir.path().to_path_buf());
    options.renderer.skip_weight_check = true;
    let server = start(options);
    let request =
        r#"{"prompt": "x", "steps": 1, "width": 512, "height": 512, "seed": 3, "checkpoint": "poisoned"}"#;
    let answer = post(&server.url("/generate/sd"), request, &[]);
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert!(answer.json()["error_id"].as_str().unwrap().starts_with("kiln-"));
    assert!(!answer.body.contains("NaN"), "the details stay in the log: {}", answer.body);
    still_serving(&server);
    assert_eq!(post(&server.url("/generate/sdxl"), &body(5, ""), &[]).status, 200);
    assert_eq!(metric(&server, "kiln_requests_total", r#"status="500""#), 1.0);
}
