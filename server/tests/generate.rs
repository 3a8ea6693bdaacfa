//! `POST /generate/{engine}` over real HTTP on 127.0.0.1: every engine, OctoAI's response body,
//! validation errors byte-equal to `kiln render`'s records, and the server's other answers.

mod common;

use std::io::Cursor;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use kiln_pipeline::runner::{self, RendererOptions, RequestSource, RunOptions};

/// The PNG of a response image.
fn png(image_b64: &serde_json::Value) -> image::RgbImage {
    let bytes = STANDARD.decode(image_b64.as_str().unwrap()).unwrap();
    image::load(Cursor::new(bytes), image::ImageFormat::Png).unwrap().to_rgb8()
}

#[test]
fn each_engine_answers_with_octoais_response_body() {
    let demo = start(options(None));
    let answer = post(&demo.url("/generate/sdxl"), &body(7, ""), &[]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["images", "prediction_time_ms"], "OctoAI's ImageGenerationResponse: {keys:?}");
    assert!(json["prediction_time_ms"].as_f64().unwrap() > 0.0);
    let image = &json["images"][0];
    assert_eq!((image["seed"].as_u64(), &image["removed_for_safety"]), (Some(7), &serde_json::json!(false)));
    assert!(image["safety_score"].is_null());
    assert_eq!(png(&image["image_b64"]).dimensions(), (1024, 1024));

    // The demo model is SDXL: the other engines' requests are the engine's 422, and the
    // ControlNet engine needs its image.
    for (engine, loc) in [("sd", "engine"), ("ssd", "engine"), ("controlnet-sdxl", "controlnet_image")] {
        let answer = post(&demo.url(&format!("/generate/{engine}")), &body(7, ""), &[]);
        assert_eq!(answer.status, 422, "{engine}: {}", answer.body);
        assert_eq!(answer.json()["detail"][0]["loc"], serde_json::json!(["body", loc]), "{engine}");
    }
    // A body that names another engine than its path.
    let answer = post(&demo.url("/generate/sdxl"), &body(7, r#", "engine": "sd""#), &[]);
    assert_eq!((answer.status, answer.json()["detail"][0]["loc"][1].as_str()), (422, Some("engine")));
    for path in ["/generate/flux-dev", "/generate/", "/generate/sdxl/x", "/v1/images"] {
        let answer = post(&demo.url(path), &body(7, ""), &[]);
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
        assert!(answer.json()["detail"].is_string(), "{path}");
    }
    demo.shutdown();

    // SD 1.5 and SSD-1B on their engines (the tiny fixtures of each family).
    for (model, engine, size) in [("fixtures/tiny/sd15", "sd", 512), ("fixtures/tiny/ssd_1b", "ssd", 1024)] {
        let server = start(options(Some(model)));
        let request = format!(
            r#"{{"prompt": "a harbour", "steps": 2, "seed": 11, "width": {size}, "height": {size}, "image_encoding": "png", "use_refiner": false}}"#
        );
        let answer = post(&server.url(&format!("/generate/{engine}")), &request, &[]);
        assert_eq!(answer.status, 200, "{engine}: {}", answer.body);
        assert_eq!(png(&answer.json()["images"][0]["image_b64"]).dimensions(), (size, size), "{engine}");
        let other = if engine == "sd" { "sdxl" } else { "sd" };
        assert_eq!(post(&server.url(&format!("/generate/{other}")), &request, &[]).status, 422);
        server.shutdown();
    }

    // The ControlNet engine on SDXL base with a ControlNet in the library.
    let dir = tempfile::tempdir().unwrap();
    // (The folder: its config.json has the tiny widths a single file would not tell.)
    copy_dir(&repo("fixtures/controlnet/sdxl_canny"), &dir.path().join("controlnets/canny"));
    let mut with_net = options(Some("fixtures/tiny/sdxl"));
    with_net.renderer.assets = Some(dir.path().to_path_buf());
    let server = start(with_net);
    let control = STANDARD.encode(std::fs::read(repo("fixtures/controlnet/control_a.png")).unwrap());
    let answer = post(
        &server.url("/generate/controlnet-sdxl"),
        &body(5, &format!(r#", "controlnet_image": "{control}""#)),
        &[],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(png(&answer.json()["images"][0]["image_b64"]).dimensions(), (1024, 1024));
}

/// Bodies that fail validation in different ways.
const BAD_BODIES: [&str; 7] = [
    r#"{"prompt": "x", "steps": 0}"#,
    r#"{"prompt": "x", "width": 1000, "height": 1000}"#,
    r#"{"prompt": "x", "stepz": 30, "cfg_scale": "high"}"#,
    r#"{"steps": 30}"#,
    r#"{"prompt": "x","#,
    r#"[1, 2, 3]"#,
    r#"{"prompt": "x", "seed": [1, -4], "sampler": "NOPE", "checkpoint": "missing"}"#,
];

#[test]
fn validation_errors_are_byte_equal_to_the_runners_records() {
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("bad.jsonl");
    std::fs::write(&requests, BAD_BODIES.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    let run = RunOptions {
        ordered: true,
        ..RunOptions::new(
            RequestSource::File(requests),
            out.clone(),
            RendererOptions { assets: Some(dir.path().to_path_buf()), ..RendererOptions::default() },
        )
    };
    let summary = runner::run(&run).unwrap();
    assert_eq!(summary.failed, BAD_BODIES.len(), "{summary}");
    let journal = std::fs::read_to_string(out.join(runner::JOURNAL_FILE)).unwrap();

    let mut with_library = options(None);
    with_library.renderer.assets = Some(dir.path().to_path_buf());
    let server = start(with_library);
    for (number, (bad, record)) in BAD_BODIES.iter().zip(journal.lines()).enumerate() {
        let prefix = format!(r#"{{"id":"{}","error":"#, number + 1);
        let error = record
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{record}"));
        let answer = post(&server.url("/generate/sdxl"), bad, &[]);
        assert_eq!(answer.status, 422, "{bad}");
        assert_eq!(answer.body, error, "{bad}");
    }
    // Not UTF-8: a 422 on the body, as the runner's record for such a line.
    let answer = agent(std::time::Duration::from_secs(30))
        .post(&server.url("/generate/sdxl"))
        .header("Content-Type", "application/json")
        .send(&b"{\"prompt\": \"caf\xe9\"}"[..])
        .unwrap();
    assert_eq!(answer.status().as_u16(), 422);
}

#[test]
fn bearer_tokens_guard_generate_and_refusals_say_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# kiln\nsecret-one\nsecret-two\n").unwrap();
    let mut guarded = options(None);
    guarded.token_file = Some(tokens);
    let server = start(guarded);
    let url = server.url("/generate/sdxl");
    let bad = BAD_BODIES[0];
    let refusals: Vec<Answer> = [
        vec![],
        vec![("Authorization", "Bearer secret-on")],
        vec![("Authorization", "Bearer secret-one2")],
        vec![("Authorization", "Basic secret-one")],
        vec![("Authorization", "secret-one")],
    ]
    .iter()
    .map(|headers| post(&url, bad, headers))
    .collect();
    for refusal in &refusals {
        assert_eq!(refusal.status, 401, "{refusal:?}");
        assert_eq!(refusal.body, refusals[0].body, "every refusal says the same");
    }
    // An accepted token reaches validation.
    for token in ["Bearer secret-one", "bearer secret-two"] {
        assert_eq!(post(&url, bad, &[("Authorization", token)]).status, 422, "{token}");
    }
    // Probes, metrics and the document stay open.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(get(&server.url(path)).0, 200, "{path}");
    }
}

#[test]
fn without_tokens_only_loopback_addresses_are_served_unless_insecure() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut open = options(None);
    open.listen = "0.0.0.0:0".parse().unwrap();
    let error = runtime.block_on(kiln_server::Server::bind(open.clone())).err().expect("refused");
    assert!(error.to_string().contains("--token-file"), "{error}");
    open.insecure_no_auth = true;
    let server = runtime.block_on(kiln_server::Server::bind(open)).expect("allowed when asked");
    assert!(!server.requires_auth());
    let mut missing = options(None);
    missing.token_file = Some(Path::new("/nonexistent/tokens").to_path_buf());
    let error = runtime.block_on(kiln_server::Server::bind(missing)).err().expect("unreadable token file");
    assert!(error.to_string().contains("/nonexistent/tokens"), "{error}");
}

#[test]
fn the_document_probes_and_metrics_answer() {
    let server = start(options(None));
    let (status, text) = get(&server.url("/openapi.json"));
    assert_eq!(status, 200);
    let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    for engine in ["sdxl", "sd", "ssd", "controlnet-sdxl"] {
        let op = &spec["paths"][format!("/generate/{engine}")]["post"];
        for status in ["200", "401", "413", "422", "500", "503"] {
            assert!(op["responses"][status].is_object(), "{engine} {status}");
        }
    }
    assert_eq!(get(&server.url("/healthz")), (200, "ok\n".into()));
    assert_eq!(get(&server.url("/readyz")), (200, "ready\n".into()));
    assert_eq!(post(&server.url("/generate/sdxl"), &body(3, ""), &[]).status, 200);
    post(&server.url("/generate/sdxl"), BAD_BODIES[0], &[]);
    assert_eq!(metric(&server, "kiln_requests_total", r#"engine="sdxl",status="200""#), 1.0);
    assert_eq!(metric(&server, "kiln_requests_total", r#"engine="sdxl",status="422""#), 1.0);
    assert_eq!(metric(&server, "kiln_images_total", ""), 1.0);
    assert_eq!(metric(&server, "kiln_batches_total", ""), 1.0);
    assert!(metric(&server, "kiln_model_load_seconds", "") > 0.0);
    assert_eq!(metric(&server, "kiln_request_duration_seconds_count", r#"engine="sdxl""#), 2.0);
    assert!(metric(&server, "kiln_device_free_memory_bytes", "") > 0.0);
}
