//! Helpers shared by the CLI tests: the built binary with the demo model cached under Cargo's
//! target tmp dir, request lines, test images, and the records of a JSONL output file.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// The demo model's cache, shared by the test binaries (made once).
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-render-tests-cache")
}

/// The `kiln` binary with the shared cache.
pub fn kiln() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.env("KILN_CACHE_DIR", cache_dir()).env("RUST_BACKTRACE", "0");
    command
}

/// The tiny SD 1.5 checkpoint fixture (512 x 512 is its cheapest size).
pub const TINY_SD15: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny/sd15");

/// Copies the folder `from` (a model fixture) to `to`, recursively, with what symlinks point
/// to in their place.
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

/// `kiln render REQUESTS --out OUT EXTRA...`.
pub fn render(requests: &Path, out: &Path, extra: &[&str]) -> Output {
    kiln().arg("render").arg(requests).arg("--out").arg(out).args(extra).output().unwrap()
}

/// `kiln render REQUESTS --out OUT EXTRA...` in the background, its output streams piped.
pub fn spawn_render(requests: &Path, out: &Path, extra: &[&str]) -> Child {
    kiln()
        .arg("render")
        .arg(requests)
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `child` has taken the lock of the output folder `out` (its pid is in the lock file).
pub fn wait_for_lock(child: &mut Child, out: &Path) {
    let want = format!("{}\n", child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(out.join(".kiln.lock")).unwrap_or_default() != want {
        assert!(Instant::now() < deadline, "no lock within 120 s");
        assert!(child.try_wait().unwrap().is_none(), "kiln exited before taking the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes `lines` as `dir/requests.jsonl`.
pub fn write_requests(dir: &Path, lines: &[impl AsRef<str>]) -> PathBuf {
    let path = dir.join("requests.jsonl");
    let text: String = lines.iter().map(|line| format!("{}\n", line.as_ref())).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// A cheap request: one step, no guidance, PNG; `extra` adds fields.
pub fn request(id: &str, seed: u32, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}", "prompt": "a small red boat, (watercolour:1.2)", "steps": 1, "cfg_scale": 1, "seed": {seed}, "image_encoding": "png", "sampler": "K_EULER"{extra}}}"#
    )
}

/// [`request`] at SD 1.5's 512 x 512.
pub fn request_sd15(id: &str, seed: u32, extra: &str) -> String {
    request(id, seed, &format!(r#", "width": 512, "height": 512{extra}"#))
}

/// Every record of a JSONL file, in file order.
pub fn read_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// The ids of records, in order.
pub fn ids(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The deepest request clip_skip (OctoAI's convention: diffusers' plus one) of the demo model,
/// from tools/make_clip_skip_fixtures.py.
pub fn demo_clip_skip_limit() -> u64 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/request/clip_skip_limits.json");
    let limits: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    limits["demo_sdxl"]["max_diffusers_clip_skip"].as_u64().unwrap() + 1
}

/// A file of demo-model lines, one of each outcome: a render ("good"), malformed JSON, a blank
/// line, an unsupported size, a ControlNet named without its image, a repeated id, an unknown field, a
/// clip_skip deeper than the text encoders, and a step count the sampler cannot run.
pub fn mixed_demo_lines() -> Vec<String> {
    // One past the deepest clip_skip diffusers encodes with the demo model's text encoders.
    let deep = demo_clip_skip_limit() + 1;
    vec![
        request("good", 11, ""),
        "{\"prompt\": \"unterminated".to_owned(),
        String::new(),
        request("bad-size", 13, r#", "width": 100, "height": 100"#),
        request("controlnet", 14, r#", "controlnet": "canny""#),
        request("good", 15, ""),
        request("typo", 16, r#", "negative_promt": "blurry""#),
        request("deep-clip", 17, &format!(r#", "clip_skip": {deep}"#)),
        // Valid for the schema; LCM runs at most 50 steps, which the sampler finds at render time.
        r#"{"id": "lcm-steps", "prompt": "a boat", "steps": 51, "cfg_scale": 1, "seed": 18, "sampler": "LCM"}"#
            .to_owned(),
    ]
}

/// A PNG of seeded noise (a small xorshift; never constant), base64; `gray` makes a mask whose
/// right half is white (repainted), with noisy values on each side.
pub fn noise_png(width: u32, height: u32, seed: u32, gray: bool) -> String {
    use base64::Engine as _;
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 24) as u8
    };
    let (pixels, color) = if gray {
        let px =
            (0..width * height).map(|i| if i % width >= width / 2 { 200 | next() } else { next() & 0x3f });
        (px.collect::<Vec<u8>>(), image::ExtendedColorType::L8)
    } else {
        ((0..width * height * 3).map(|_| next()).collect(), image::ExtendedColorType::Rgb8)
    };
    let mut bytes = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    image::ImageEncoder::write_image(encoder, &pixels, width, height, color).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `render` with the tiny SD 1.5 fixture.
pub fn render_sd15(requests: &Path, out: &Path, extra: &[&str]) -> Output {
    render(requests, out, &[&["--model", TINY_SD15], extra].concat())
}

/// The journal's records by id (each id must appear exactly once).
pub fn records(out: &Path) -> HashMap<String, Value> {
    let text = std::fs::read_to_string(out.join("responses.jsonl")).unwrap();
    let mut by_id = HashMap::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let id = record["id"].as_str().unwrap().to_owned();
        assert!(by_id.insert(id.clone(), record).is_none(), "id {id} appears twice");
    }
    by_id
}

/// The decoded pixels of each image of a response.
pub fn pixels(record: &Value) -> Vec<image::RgbImage> {
    record["images"]
        .as_array()
        .unwrap_or_else(|| panic!("not a response: {record}"))
        .iter()
        .map(|img| {
            let bytes = STANDARD.decode(img["image_b64"].as_str().unwrap()).unwrap();
            image::load_from_memory(&bytes).unwrap().to_rgb8()
        })
        .collect()
}

/// The first error of an error record.
pub fn first_error(record: &Value) -> &Value {
    &record["error"]["detail"][0]
}

/// Starts `kiln serve ARGS` on a free loopback port: the child, its address, and its standard
/// error lines as they come.
pub fn serve(args: &[&str]) -> (Child, String, mpsc::Receiver<String>) {
    let mut child = kiln()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, receive) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut addr = None;
    let mut seen = Vec::new();
    while addr.is_none() {
        let line =
            receive.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no address: {seen:?}"));
        addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(String::from);
        seen.push(line);
    }
    let addr = addr.unwrap();
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    for _ in 0..1200 {
        if agent.get(&format!("http://{addr}/readyz")).call().is_ok_and(|r| r.status() == 200) {
            return (child, addr, receive);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("kiln serve never got ready");
}
