//! `kiln render --contact-sheet` end to end: the page opened in a real headless browser
//! (Debian's Chromium) shows every thumbnail and every error message, sorts on request, and runs
//! none of the request text; `contact.png` holds the thumbnails; a resumed run's sheet keeps the
//! earlier requests; a corrupt sidecar is a fatal error naming its line.
//!
//! Without Chromium the browser checks skip, saying so, unless `KILN_REQUIRE_CHROMIUM=1` (CI)
//! makes that a failure. The hostile prompt and id and their escaped forms come from
//! `fixtures/contact/escape.json` (Python's `html.escape`, tools/make_contact_fixtures.py).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use image::RgbImage;
use serde_json::Value;

const TINY_SD15: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny/sd15");
const ESCAPE_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/contact/escape.json");

fn kiln() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-contact-tests-cache");
    command.env("KILN_CACHE_DIR", cache).env("RUST_BACKTRACE", "0");
    command
}

fn render(requests: &Path, out: &Path, extra: &[&str]) -> Output {
    kiln()
        .arg("render")
        .arg(requests)
        .arg("--out")
        .arg(out)
        .args(["--model", TINY_SD15])
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A cheap SD 1.5 request (one step, no guidance, PNG); `id` and `prompt` are JSON-encoded here.
fn request(id: &str, prompt: &str, seed: u32, extra: &str) -> String {
    let (id, prompt) = (serde_json::to_string(id).unwrap(), serde_json::to_string(prompt).unwrap());
    format!(
        r#"{{"id": {id}, "prompt": {prompt}, "steps": 1, "cfg_scale": 1, "seed": {seed}, "width": 512, "height": 512, "image_encoding": "png", "sampler": "K_EULER"{extra}}}"#
    )
}

/// The fixture's (text, escaped) pairs.
fn escape_cases() -> Vec<(String, String)> {
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(ESCAPE_FIXTURE).unwrap()).unwrap();
    cases
        .iter()
        .map(|c| (c["text"].as_str().unwrap().to_owned(), c["escaped"].as_str().unwrap().to_owned()))
        .collect()
}

/// The journal's records (each a JSON object).
fn journal(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("responses.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The thumbnails of the sidecar, in run order: (id, k, file relative to the output directory).
fn sidecar_thumbs(out: &Path) -> Vec<(String, usize, String)> {
    let text = std::fs::read_to_string(out.join("contact.jsonl")).unwrap();
    let mut thumbs = Vec::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        for (k, image) in record["images"].as_array().into_iter().flatten().enumerate() {
            let id = record["id"].as_str().unwrap().to_owned();
            thumbs.push((id, k, image["file"].as_str().unwrap().to_owned()));
        }
    }
    thumbs
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(p, q)| p.abs_diff(*q) as u64).sum();
    sum as f64 / a.as_raw().len() as f64
}

/// Where `small` appears in `big`: the top-left corner of the best match whose mean absolute
/// difference is under `tolerance` (screen pixels may differ from the image crate's JPEG
/// decoding by a level or two). A coarse pass on a 6 x 6 lattice of pixels finds candidates.
fn find(big: &RgbImage, small: &RgbImage, tolerance: f64) -> Option<(u32, u32)> {
    let (bw, bh, sw, sh) = (big.width(), big.height(), small.width(), small.height());
    if sw > bw || sh > bh {
        return None;
    }
    let lattice: Vec<(u32, u32)> =
        (0..6).flat_map(|i| (0..6).map(move |j| (i * (sw - 1) / 5, j * (sh - 1) / 5))).collect();
    let coarse_limit = (tolerance * 4.0 * (lattice.len() * 3) as f64) as u32;
    let mut best: Option<(f64, u32, u32)> = None;
    for y in 0..=bh - sh {
        for x in 0..=bw - sw {
            let mut sad = 0u32;
            for &(i, j) in &lattice {
                let (p, q) = (big.get_pixel(x + i, y + j).0, small.get_pixel(i, j).0);
                sad += (0..3).map(|c| p[c].abs_diff(q[c]) as u32).sum::<u32>();
                if sad > coarse_limit {
                    break;
                }
            }
            if sad > coarse_limit {
                continue;
            }
            let window = image::imageops::crop_imm(big, x, y, sw, sh).to_image();
            let diff = mean_abs_diff(&window, small);
            if diff < tolerance && best.is_none_or(|(d, _, _)| diff < d) {
                best = Some((diff, x, y));
            }
        }
    }
    best.map(|(_, x, y)| (x, y))
}

/// Debian's Chromium, or `None` (after saying so) where it is absent; a failure instead when
/// `KILN_REQUIRE_CHROMIUM=1`.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("chromium")).find(|path| path.is_file())
    });
    if found.is_none() {
        let required = std::env::var("KILN_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
        assert!(!required, "KILN_REQUIRE_CHROMIUM=1 but no `chromium` on PATH (apt-get install -y chromium)");
        eprintln!("skipped: the browser checks need Chromium (`apt-get install -y chromium`); none on PATH");
    }
    found
}

/// Runs headless Chromium on `url` with `args` (a fresh profile, nothing from the network) and
/// returns its standard output; fails after two minutes.
fn run_chromium(chromium: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--force-color-profile=srgb",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("chromium did not finish {url} within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "chromium failed on {url}: {}", stderr(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `data-id` values of the cells of a dumped DOM, in document order, with their
/// `data-time` (`None` for an error cell).
fn dom_cells(dom: &str) -> Vec<(String, Option<f64>)> {
    dom.split("<figure ")
        .skip(1)
        .map(|figure| {
            let attribute = |name: &str| {
                let start = figure.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                figure[start..start + figure[start..].find('"').unwrap()].to_owned()
            };
            (attribute("data-id"), attribute("data-time").parse().ok())
        })
        .collect()
}

#[test]
fn the_sheet_shows_every_image_and_error_in_a_browser_and_grows_on_resume() {
    let cases = escape_cases();
    let ((hostile_prompt, escaped_prompt), (hostile_id, escaped_id)) = (&cases[0], &cases[1]);
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec![
        request("a", hostile_prompt, 11, r#", "num_images": 2"#),
        request(hostile_id, "a red boat", 12, ""),
        request("bad", "too small", 13, r#", "width": 100"#),
        "{\"prompt\": \"unterminated".to_owned(),
        request("c", "a green hill", 14, ""),
    ];
    let requests = dir.path().join("requests.jsonl");
    std::fs::write(&requests, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    let output = render(&requests, &out, &["--contact-sheet"]);
    assert_eq!(output.status.code(), Some(1), "two lines fail: {}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("index.html"), "names the page");

    // The files; every id of the journal is in the sidecar, one thumbnail per image.
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    let thumbs = sidecar_thumbs(&out);
    let journal = journal(&out);
    let images: usize = journal.iter().map(|r| r["images"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!((journal.len(), images, thumbs.len()), (5, 4, 4));
    assert!(!out.join("page-2.html").exists(), "6 cells fit one page");

    // Request text is escaped as Python's html.escape escapes it, and never raw.
    assert!(index.contains(escaped_prompt.as_str()) && index.contains(escaped_id.as_str()));
    assert!(!index.contains(hostile_prompt.as_str()) && !index.contains(hostile_id.as_str()));
    assert!(!index.contains("<script>document"), "the prompt's script is text");

    // Each thumbnail is its response image, shrunk: nearer to it than to any other image
    // (JPEG at 160 px on the tiny model's noisy images costs several levels on average).
    let shrunk: Vec<RgbImage> = thumbs
        .iter()
        .map(|(id, k, _)| {
            let record = journal.iter().find(|r| r["id"] == id.as_str()).unwrap();
            let bytes = STANDARD.decode(record["images"][*k]["image_b64"].as_str().unwrap()).unwrap();
            let full = image::load_from_memory(&bytes).unwrap().to_rgb8();
            image::imageops::resize(&full, 160, 160, image::imageops::FilterType::Triangle)
        })
        .collect();
    let mut loaded: Vec<RgbImage> = Vec::new();
    for (i, (id, k, file)) in thumbs.iter().enumerate() {
        let thumb = image::open(out.join(file)).unwrap().to_rgb8();
        assert_eq!(thumb.dimensions(), (160, 160), "{file}");
        let own = mean_abs_diff(&thumb, &shrunk[i]);
        let nearest_other = (0..shrunk.len())
            .filter(|&j| j != i)
            .map(|j| mean_abs_diff(&thumb, &shrunk[j]))
            .fold(f64::INFINITY, f64::min);
        assert!(
            own < 12.0 && own < 0.75 * nearest_other,
            "{file} is {id} #{k} shrunk ({own:.2} vs {nearest_other:.2})"
        );
        loaded.push(thumb);
    }

    // contact.png holds every thumbnail.
    let grid = image::open(out.join("contact.png")).unwrap().to_rgb8();
    for ((_, _, file), thumb) in thumbs.iter().zip(&loaded) {
        assert!(find(&grid, thumb, 0.5).is_some(), "{file} is in contact.png");
    }

    if let Some(chromium) = chromium() {
        let url = format!("file://{}", out.join("index.html").display());
        let profile = tempfile::tempdir().unwrap();
        let shot = dir.path().join("screenshot.png");
        let shot_arg = format!("--screenshot={}", shot.display());
        run_chromium(&chromium, profile.path(), &url, &[&shot_arg, "--window-size=1280,900"]);
        let screen = image::open(&shot).unwrap().to_rgb8();
        let mut places = Vec::new();
        for ((_, _, file), thumb) in thumbs.iter().zip(&loaded) {
            let place = find(&screen, thumb, 4.0);
            assert!(place.is_some(), "{file} is on the screen (screenshot {})", shot.display());
            places.push(place.unwrap());
        }
        // Run order: the thumbnails come in the sidecar's order, left to right on one row.
        assert!(places.windows(2).all(|w| w[0].1 == w[1].1 && w[0].0 < w[1].0), "{places:?}");

        let dom = run_chromium(&chromium, profile.path(), &url, &["--dump-dom"]);
        assert!(dom.contains("<title>kiln contact sheet, page 1</title>"), "the prompt's script did not run");
        assert!(dom.contains("is not a size"), "the size error's message is shown");
        assert!(dom.contains("JSON decode error"), "the malformed line's message is shown");
        let cells = dom_cells(&dom);
        assert_eq!(cells.len(), 6, "4 images and 2 errors");

        let sorted = run_chromium(&chromium, profile.path(), &format!("{url}#sort=id"), &["--dump-dom"]);
        let ids: Vec<String> = dom_cells(&sorted).into_iter().map(|(id, _)| id).collect();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(ids, expected, "sorted by id");
        let by_time = run_chromium(&chromium, profile.path(), &format!("{url}#sort=-time"), &["--dump-dom"]);
        let times: Vec<Option<f64>> = dom_cells(&by_time).into_iter().map(|(_, t)| t).collect();
        assert!(times[..2].iter().all(Option::is_none), "errors (no time) first when descending: {times:?}");
        assert!(times[2..].windows(2).all(|w| w[0] >= w[1]), "slowest first: {times:?}");
    }

    // A resumed run with one more line: the sheet keeps the earlier requests.
    lines.push(request("d", "a blue lake", 15, ""));
    std::fs::write(&requests, lines.join("\n") + "\n").unwrap();
    let output = render(&requests, &out, &["--contact-sheet"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    let ids: HashSet<String> = sidecar_thumbs(&out).into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 4, "a, the hostile id, c and d: {ids:?}");
    assert_eq!(index.matches("<figure ").count(), 7, "5 images and 2 errors");
    assert!(index.contains(escaped_prompt.as_str()) && index.contains(r#"data-id="d""#));
}

#[test]
fn without_the_flag_there_is_no_sheet_and_a_corrupt_sidecar_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("requests.jsonl");
    std::fs::write(&requests, request("bad", "x", 1, r#", "width": 100"#) + "\n").unwrap();
    let out = dir.path().join("plain");
    let output = render(&requests, &out, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    for file in ["index.html", "contact.png", "contact.jsonl", "thumbs"] {
        assert!(!out.join(file).exists(), "{file} without --contact-sheet");
    }

    let out = dir.path().join("corrupt");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("contact.jsonl"), "{\"status\": \"error\", \"line\": 1}\n").unwrap();
    let output = render(&requests, &out, &["--contact-sheet"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("contact.jsonl:1"), "names the sidecar's line: {err}");
}
