//! Resolving a request against a model family: default and supported sizes (the spec's lists),
//! SDXL-only fields, image-field rules, clip-skip convention, random seeds and style presets.
//! Sizes and style names come from fixtures/request/schema.json (read from OctoAI's spec).

mod request_common;

use kiln_pipeline::request::{Request, RequestError, Style, supported_sizes};
use kiln_runtime::checkpoint::Family;
use rand::SeedableRng;
use rand::rngs::StdRng;
use request_common::{body, errors_at, loc, parse, schema};
use serde_json::{Value, json};

fn request(extra: Value) -> Request {
    parse(&body(extra)).request.expect("request parses")
}

/// `extra` plus an init image and a mask, which inpainting families need (base64 text only:
/// decoding is the runner's job).
fn with_images(extra: Value) -> Value {
    let mut v = json!({"init_image": "aW1n", "mask_image": "bWFzaw=="});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    v
}

fn resolve_errors(extra: Value, family: Family) -> RequestError {
    request(extra).resolve(family).expect_err("resolve fails")
}

fn fields(error: &RequestError) -> Vec<(String, String)> {
    error.detail.iter().map(|e| (loc(e)[1].as_str().unwrap_or("?").to_string(), e.kind.clone())).collect()
}

fn spec_sizes(label: &str) -> Vec<(usize, usize)> {
    let sizes = schema()["sizes"][label].clone();
    sizes
        .as_array()
        .expect("sizes")
        .iter()
        .map(|p| (p[0].as_u64().expect("w") as usize, p[1].as_u64().expect("h") as usize))
        .collect()
}

fn label(family: Family) -> &'static str {
    if family.is_sdxl() { "SDXL" } else { "SD1.5" }
}

#[test]
fn supported_sizes_are_the_spec_lists() {
    for family in Family::ALL {
        assert_eq!(supported_sizes(family), spec_sizes(label(family)).as_slice(), "{family:?}");
    }
}

#[test]
fn default_size_per_family() {
    // The spec: "None will default to 512 for SD 1.5 and 1024 for ... SDXL".
    assert!(schema()["properties"]["width"]["default"].is_null(), "width has no fixed default in the spec");
    for family in Family::ALL {
        let job = request(with_images(json!({}))).resolve(family).expect("defaults resolve").job;
        let side = if family.is_sdxl() { 1024 } else { 512 };
        assert_eq!((job.width, job.height), (side, side), "{family:?}");
    }
}

#[test]
fn every_listed_size_resolves_and_others_are_rejected_with_the_list() {
    let all_sizes: Vec<(usize, usize)> = [spec_sizes("SDXL"), spec_sizes("SD1.5")].concat();
    for family in Family::ALL {
        let listed = spec_sizes(label(family));
        for &(w, h) in &all_sizes {
            let result = request(with_images(json!({"width": w, "height": h}))).resolve(family);
            if listed.contains(&(w, h)) {
                let job = result.expect("listed size").job;
                assert_eq!((job.width, job.height), (w, h));
            } else {
                let error = result.expect_err("unlisted size rejected");
                assert_eq!(
                    fields(&error),
                    [
                        ("height".to_string(), "value_error".to_string()),
                        ("width".to_string(), "value_error".to_string())
                    ]
                );
                for (lw, lh) in &listed {
                    assert!(
                        error.detail[1].msg.contains(&format!("({lw}, {lh})")),
                        "{}",
                        error.detail[1].msg
                    );
                }
            }
        }
        // Only the field that was sent is blamed.
        let error = resolve_errors(with_images(json!({"width": 1000})), family);
        assert_eq!(fields(&error), [("width".to_string(), "value_error".to_string())]);
        let error = resolve_errors(with_images(json!({"height": 1000})), family);
        assert_eq!(fields(&error), [("height".to_string(), "value_error".to_string())]);
        let error = resolve_errors(with_images(json!({"width": -512, "height": 0})), family);
        assert_eq!(error.detail.len(), 2);
    }
}

#[test]
fn second_prompts_only_for_sdxl() {
    for family in Family::ALL {
        for field in ["prompt_2", "negative_prompt_2"] {
            let result = request(with_images(json!({ field: "a watercolour sky" }))).resolve(family);
            if family.is_sdxl() {
                assert!(result.is_ok(), "{family:?} {field}");
            } else {
                let error = result.expect_err("SD 1.5 rejects it");
                assert_eq!(fields(&error), [(field.to_string(), "value_error".to_string())]);
            }
        }
    }
    let job = request(json!({"prompt_2": "p2", "negative_prompt": "n", "negative_prompt_2": "n2"}))
        .resolve(Family::SdxlBase)
        .expect("sdxl")
        .job;
    assert_eq!(
        (job.prompt_2.as_deref(), job.negative_prompt.as_deref(), job.negative_prompt_2.as_deref()),
        (Some("p2"), Some("n"), Some("n2"))
    );
}

#[test]
fn image_fields() {
    let family = Family::Sd15;
    let error = resolve_errors(json!({"mask_image": "bWFzaw=="}), family);
    assert_eq!(fields(&error), [("mask_image".to_string(), "value_error".to_string())]);
    let error = resolve_errors(json!({"outpainting": true, "init_image": "aW1n"}), family);
    assert_eq!(fields(&error), [("outpainting".to_string(), "value_error".to_string())]);
    let resolved = request(
        json!({"init_image": "aW1n", "mask_image": "bWFzaw==", "outpainting": true, "strength": 0.35}),
    )
    .resolve(family)
    .expect("inpaint request");
    assert_eq!(resolved.init_image.as_deref(), Some("aW1n"));
    assert_eq!(resolved.mask_image.as_deref(), Some("bWFzaw=="));
    assert_eq!((resolved.strength, resolved.outpainting), (0.35, true));
    assert!(resolved.job.init.is_none());
}

#[test]
fn inpainting_models_need_an_image_and_a_mask() {
    for family in Family::ALL {
        let text_only = request(json!({})).resolve(family);
        let no_mask = request(json!({"init_image": "aW1n"})).resolve(family);
        let both = request(json!({"init_image": "aW1n", "mask_image": "bWFzaw=="})).resolve(family);
        assert!(both.is_ok(), "{family:?}");
        if family.is_inpainting() {
            let e = text_only.expect_err("text-to-image on an inpainting model");
            assert_eq!(fields(&e), [("init_image".to_string(), "value_error".to_string())]);
            let e = no_mask.expect_err("no mask on an inpainting model");
            assert_eq!(fields(&e), [("mask_image".to_string(), "value_error".to_string())]);
        } else {
            assert!(text_only.is_ok() && no_mask.is_ok(), "{family:?}");
        }
    }
}

#[test]
fn clip_skip_maps_to_the_diffusers_convention() {
    // OctoAI/A1111 clip_skip 1 is the last layer (diffusers' None); n skips n - 1 layers.
    let job = |c: Value| request(json!({"clip_skip": c})).resolve(Family::SdxlBase).expect("clip_skip").job;
    assert_eq!(job(json!(null)).clip_skip, None);
    assert_eq!(job(json!(1)).clip_skip, None);
    for n in 2..=12 {
        assert_eq!(job(json!(n)).clip_skip, Some(n - 1));
    }
}

#[test]
fn job_carries_the_request() {
    let resolved =
        request(json!({"steps": 12, "cfg_scale": 4.5, "sampler": "K_EULER", "seed": 77, "num_images": 2,
                                  "negative_prompt": "fog", "image_encoding": "png"}))
        .resolve(Family::Sd15)
        .expect("resolves");
    let job = resolved.job;
    assert_eq!((job.steps, job.cfg_scale, job.sampler.as_str()), (12, 4.5, "K_EULER"));
    assert_eq!(job.seeds, [77, 78]);
    assert_eq!(job.prompt, "a lighthouse on a cliff at dusk");
    assert_eq!(job.negative_prompt.as_deref(), Some("fog"));
    assert_eq!(serde_json::to_value(resolved.image_encoding).expect("enc"), json!("png"));
}

#[test]
fn missing_seeds_are_drawn_in_range() {
    let r = request(json!({"seed": [null, 5, null], "num_images": 3}));
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let seeds = r.resolve_with_rng(Family::SdxlBase, &mut rng).expect("seeds").job.seeds;
    assert_eq!(seeds.len(), 3);
    assert_eq!(seeds[1], 5);
    assert!(seeds[0] > 0 && seeds[2] > 0);
    // Drawn again from the same generator: the same seeds; from the thread generator: in range.
    let again =
        r.resolve_with_rng(Family::SdxlBase, &mut StdRng::seed_from_u64(0x5eed)).expect("again").job.seeds;
    assert_eq!(seeds, again);
    let many = request(json!({"num_images": 16})).resolve(Family::Sd15).expect("random").job.seeds;
    assert_eq!(many.len(), 16);
    assert!(many.iter().all(|&s| s > 0));
    assert!(many.windows(2).any(|w| w[0] != w[1]), "16 random seeds all equal: {many:?}");
}

fn style_names() -> Vec<String> {
    let styles = schema()["styles"].clone();
    styles.as_array().expect("styles").iter().filter_map(|s| s.as_str().map(String::from)).collect()
}

#[test]
fn every_spec_style_resolves_and_contains_the_prompt() {
    let names = style_names();
    assert_eq!(names.len(), 78);
    assert!(names.contains(&"Pokémon".to_string()));
    let prompt = "a lighthouse on a cliff at dusk";
    for name in &names {
        let style = Style::named(name).unwrap_or_else(|| panic!("no preset {name}"));
        assert_eq!(style.prompt.matches("{prompt}").count(), 1, "{name}");
        let job = request(json!({"style_preset": name, "negative_prompt": "birds"}))
            .resolve(Family::SdxlBase)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .job;
        assert!(job.prompt.contains(prompt), "{name}: {}", job.prompt);
        assert!(!job.prompt.contains("{prompt}"), "{name}");
        let negative = job.negative_prompt.expect("negative");
        assert!(negative.ends_with("birds"), "{name}: {negative}");
        if name == "base" {
            assert_eq!((job.prompt.as_str(), negative.as_str()), (prompt, "birds"));
        } else {
            assert_ne!(job.prompt, prompt, "{name} changes nothing");
            // Preset negative first, then ", ", then the user's.
            assert_eq!(negative, format!("{}, birds", style.negative), "{name}");
        }
    }
    // kiln has no preset the spec lacks.
    let kiln: Vec<&str> = kiln_pipeline::request::style::STYLES.iter().map(|s| s.name).collect();
    assert_eq!(kiln, names.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn style_applies_to_second_prompts_and_keeps_absent_negatives_absent() {
    let job = request(json!({"style_preset": "base"})).resolve(Family::SdxlBase).expect("base").job;
    assert_eq!(job.negative_prompt, None);
    let job = request(json!({"style_preset": "Watercolor", "prompt_2": "second", "negative_prompt_2": "n2"}))
        .resolve(Family::SdxlBase)
        .expect("watercolor")
        .job;
    let style = Style::named("Watercolor").expect("Watercolor");
    assert_eq!(job.prompt_2, Some(style.apply("second")));
    assert_eq!(job.negative_prompt, Some(style.negative.to_string()));
    assert_eq!(job.negative_prompt_2, Some(format!("{}, n2", style.negative)));
}

#[test]
fn unknown_style_is_an_enum_error_listing_every_name() {
    let line = parse(&body(json!({"style_preset": "vaporwave"})));
    let errs = errors_at(&line, "style_preset");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].kind, "enum");
    for name in style_names() {
        assert!(errs[0].msg.contains(&format!("'{name}'")), "{name}");
    }
}

#[test]
fn styles_are_for_sdxl_only() {
    for family in [Family::Sd15, Family::Sd15Inpaint] {
        let error = resolve_errors(with_images(json!({"style_preset": "anime"})), family);
        assert_eq!(fields(&error), [("style_preset".to_string(), "value_error".to_string())]);
    }
}

#[test]
fn malformed_prompt_weights_are_errors_on_their_field() {
    // A1111's parser refuses a weight that is not a number (see fixtures/prompt/attention.json).
    for field in ["prompt", "negative_prompt", "prompt_2", "negative_prompt_2"] {
        let e = resolve_errors(json!({ field: "a (cat:1.2.3) on a mat" }), Family::SdxlBase);
        assert_eq!(fields(&e), vec![(field.to_string(), "value_error".to_string())], "{field}");
        assert!(e.detail[0].msg.contains("prompt weighting"), "{}", e.detail[0].msg);
    }
    assert!(request(json!({"prompt": "a (cat:1.2) on a [mat]"})).resolve(Family::SdxlBase).is_ok());
}

#[test]
fn prompt_weights_beyond_f32_are_errors_on_their_field() {
    // Weights are applied as f32: a product past f32's range would make the embedding infinite.
    let e20 = format!("1{}", "0".repeat(20));
    let overflowing = [
        format!("a (cat:1{}) on a mat", "0".repeat(40)),
        format!("a ((cat:{e20}):{e20}) on a mat"),
        format!("{}cat{}", "(".repeat(1000), ")".repeat(1000)),
        format!("(cat:-3{})", "0".repeat(39)),
    ];
    for prompt in &overflowing {
        for field in ["prompt", "negative_prompt", "prompt_2", "negative_prompt_2"] {
            let e = resolve_errors(json!({ field: prompt }), Family::SdxlBase);
            assert_eq!(fields(&e), vec![(field.to_string(), "value_error".to_string())], "{field}: {prompt}");
            assert!(e.detail[0].msg.contains("beyond the range of f32"), "{}", e.detail[0].msg);
        }
    }
    // Within f32 (3e38), shrinking to nothing, or not a weight at all (A1111 has no exponents).
    let fine = [
        format!("(cat:3{})", "0".repeat(38)),
        format!("{}cat{}", "[".repeat(1000), "]".repeat(1000)),
        "(cat:1e40)".to_string(),
    ];
    for prompt in fine {
        assert!(request(json!({ "prompt": prompt })).resolve(Family::SdxlBase).is_ok(), "{prompt}");
    }
}

#[test]
fn a_strength_that_runs_no_step_is_an_error() {
    // diffusers runs floor(steps * strength) steps and refuses zero.
    let e = resolve_errors(json!({"init_image": "aW1n", "steps": 3, "strength": 0.3}), Family::SdxlBase);
    assert_eq!(fields(&e), vec![("strength".to_string(), "value_error".to_string())]);
    let ok = request(json!({"init_image": "aW1n", "steps": 4, "strength": 0.25})).resolve(Family::SdxlBase);
    assert!(ok.is_ok());
}

#[test]
fn the_engine_field_must_fit_the_model() {
    // OctoAI's endpoints: /generate/{sdxl, sd, ssd, controlnet-sdxl}.
    let fits = [
        ("sd", &[Family::Sd15, Family::Sd15Inpaint][..]),
        ("sdxl", &[Family::SdxlBase, Family::SdxlRefiner, Family::SdxlInpaint][..]),
        ("ssd", &[Family::Ssd1b][..]),
        ("controlnet-sdxl", &[Family::SdxlBase][..]),
    ];
    for (engine, families) in fits {
        for family in Family::ALL {
            // The ControlNet engine needs its control image, and takes no inpainting mask.
            let body = match engine {
                "controlnet-sdxl" => json!({"engine": engine, "controlnet_image": "aW1n"}),
                _ => with_images(json!({"engine": engine})),
            };
            let resolved = request(body).resolve(family);
            if families.contains(&family) {
                assert!(resolved.is_ok(), "{engine} on {family}: {:?}", resolved.err());
                continue;
            }
            let error = resolved.expect_err("a mismatch");
            let engine_error = ("engine".to_string(), "value_error".to_string());
            if engine == "controlnet-sdxl" {
                // Inpainting models also miss their init image and mask.
                assert_eq!(fields(&error)[0], engine_error, "{engine} {family}");
            } else {
                assert_eq!(fields(&error), [engine_error], "{engine} {family}");
            }
            let msg = &error.detail[0].msg;
            assert!(msg.contains(&format!("'{engine}'")) && msg.contains(&family.to_string()), "{msg}");
        }
    }
    // Absent or null: any model.
    assert!(request(json!({"engine": null})).resolve(Family::Ssd1b).is_ok());
    assert!(request(json!({})).resolve(Family::Sd15).is_ok());
}

#[test]
fn an_unknown_engine_is_an_enum_error() {
    let line = parse(&body(json!({"engine": "sd3"})));
    let errs = errors_at(&line, "engine");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].kind, "enum");
    assert!(errs[0].msg.contains("'sdxl', 'sd', 'ssd' or 'controlnet-sdxl'"), "{}", errs[0].msg);
    assert!(errors_at(&parse(&body(json!({"engine": "ssd"}))), "engine").is_empty());
}

#[test]
fn ssd_1b_takes_sdxl_sizes_and_fields() {
    let job = request(json!({"prompt_2": "film", "style_preset": "anime"}))
        .resolve(Family::Ssd1b)
        .expect("ssd")
        .job;
    assert_eq!((job.width, job.height), (1024, 1024));
    assert_eq!(supported_sizes(Family::Ssd1b), supported_sizes(Family::SdxlBase));
}

#[test]
fn inpaint_full_res_needs_a_mask_and_a_margin_that_is_not_negative() {
    let masked = json!({"init_image": "aW1n", "mask_image": "bWFzaw==", "inpaint_full_res": true});
    let resolved = request(masked.clone()).resolve(Family::SdxlBase).expect("full res");
    assert_eq!(resolved.full_res, Some(32), "the spec's default padding");
    let mut padded = masked.as_object().unwrap().clone();
    padded.insert("inpaint_full_res_padding".into(), json!(0));
    assert_eq!(request(Value::Object(padded.clone())).resolve(Family::SdxlBase).unwrap().full_res, Some(0));
    padded.insert("inpaint_full_res_padding".into(), json!(-4));
    let error = request(Value::Object(padded)).resolve(Family::SdxlBase).unwrap_err();
    assert_eq!(fields(&error), [("inpaint_full_res_padding".to_string(), "value_error".to_string())]);
    let error = resolve_errors(json!({"init_image": "aW1n", "inpaint_full_res": true}), Family::SdxlBase);
    assert_eq!(fields(&error), [("inpaint_full_res".to_string(), "value_error".to_string())]);
    assert_eq!(request(json!({"inpaint_full_res": false})).resolve(Family::SdxlBase).unwrap().full_res, None);
}
