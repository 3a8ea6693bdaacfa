//! kiln as a library, the way a serving stack uses it: load a renderer, validate requests, render
//! them as one batch, and get OctoAI's response bodies (or its 422 bodies).
//!
//! ```sh
//! cargo run --release -p kiln-pipeline --example library            # the demo model
//! cargo run --release -p kiln-pipeline --example library -- MODEL   # a checkpoint
//! ```

use std::sync::atomic::AtomicBool;

use kiln_pipeline::request::{EngineName, parse_for_engine};
use kiln_pipeline::runner::{Outcome, Refusal, Renderer, RendererOptions, encode_response};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options =
        RendererOptions { model: std::env::args_os().nth(1).map(Into::into), ..RendererOptions::default() };
    let mut renderer = Renderer::load(&options)?;
    let validator = renderer.validator().clone(); // cheap to clone, shareable across threads

    // Bodies as `POST /generate/sdxl` would receive them.
    let bodies = [
        r#"{"prompt": "a lighthouse at dusk", "steps": 4, "seed": 1, "use_refiner": false}"#,
        r#"{"prompt": "a lighthouse at dawn", "steps": 4, "seed": 2, "use_refiner": false}"#,
        r#"{"prompt": "a lighthouse", "steps": 0, "width": 1000}"#,
    ];
    let mut batch = Vec::new();
    for (n, body) in bodies.iter().enumerate() {
        let line = parse_for_engine(body, n + 1, Some(EngineName::Sdxl));
        let prepared =
            line.request.map_err(Refusal::Invalid).and_then(|r| validator.prepare(line.id.clone(), r));
        match prepared {
            Ok(prepared) => batch.push(prepared),
            Err(Refusal::Invalid(error)) => println!("{}: 422 {}", line.id, serde_json::to_string(&error)?),
            Err(Refusal::Unusable { checkpoint, reason }) => {
                println!("{}: 500 cannot use {}: {reason}", line.id, checkpoint.display())
            }
        }
    }

    // Requests with equal batch keys share engine calls (here both valid ones: one call).
    let rendered = renderer
        .render(batch, &mut |_, _, _| {}, &AtomicBool::new(false))
        .map_err(|s| format!("stopped with {} left", s.left))?;
    for (prepared, outcome) in &rendered.results {
        match outcome {
            Outcome::Done(done) => {
                let (response, _png_or_jpeg_bytes) =
                    encode_response(prepared, done).map_err(|e| e.to_string())?;
                let mut body = serde_json::to_value(response.body())?;
                for image in body["images"].as_array_mut().into_iter().flatten() {
                    let b64 = image["image_b64"].as_str().unwrap_or_default();
                    image["image_b64"] = format!("<{} base64 characters>", b64.len()).into();
                }
                println!("{}: 200 {body}", prepared.id);
            }
            Outcome::Failed(error) => println!("{}: 422 {}", prepared.id, serde_json::to_string(error)?),
            Outcome::Unusable(reason) => println!("{}: 500 {reason}", prepared.id),
        }
    }
    Ok(())
}
