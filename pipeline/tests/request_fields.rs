//! Field-by-field validation of one JSONL line: defaults, every limit just inside and just
//! outside, wrong types, enums, seeds, ids, unknown fields and the body itself. Names, defaults
//! and limits come from fixtures/request/schema.json, read from OctoAI's OpenAPI spec by
//! tools/make_request_fixtures.py.

mod request_common;

use kiln_pipeline::image::ImageEncoding;
use kiln_pipeline::request::{KILN_FIELDS, parse_line};
use request_common::{body, errors, errors_at, kinds_at, loc, parse, property, schema};
use serde_json::{Value, json};

fn default_of(name: &str) -> Value {
    property(name)["default"].clone()
}

#[test]
fn defaults_are_the_schema_defaults() {
    let line = parse(&body(json!({})));
    let request = line.request.expect("minimal request parses");
    // Unsent fields the checkpoint may set (NAME.json) stay unset until resolved; kiln's
    // defaults are the schema's.
    assert_eq!((request.cfg_scale, request.steps, request.sampler), (None, None, None));
    assert_eq!(Value::from(kiln_pipeline::request::DEFAULT_CFG_SCALE), default_of("cfg_scale"));
    assert_eq!(Value::from(kiln_pipeline::request::DEFAULT_STEPS), default_of("steps"));
    assert_eq!(Value::from(kiln_pipeline::request::DEFAULT_SAMPLER.as_str()), default_of("sampler"));
    let job = request.resolve(kiln_runtime::checkpoint::Family::Sd15).expect("resolves").job;
    assert_eq!(Value::from(f64::from(job.cfg_scale)), default_of("cfg_scale"));
    assert_eq!(Value::from(job.steps), default_of("steps"));
    assert_eq!(Value::from(job.sampler.as_str()), default_of("sampler"));
    assert_eq!(Value::from(request.num_images()), default_of("num_images"));
    assert_eq!(Value::from(request.strength), default_of("strength"));
    assert_eq!(Value::from(request.outpainting), default_of("outpainting"));
    assert_eq!(serde_json::to_value(request.image_encoding).expect("encoding"), default_of("image_encoding"));
    assert_eq!(request.seeds, vec![None]);
    assert_eq!((request.width, request.height, request.clip_skip), (None, None, None));
    assert!(request.style_preset.is_none() && request.checkpoint.is_none());
    assert!(request.init_image.is_none() && request.mask_image.is_none());
    assert!(line.warnings.is_empty());
}

/// The numeric properties and their limits, as schema.json lists them.
fn numeric_properties() -> Vec<(String, bool, Value)> {
    let schema = schema();
    let mut out = Vec::new();
    for (name, p) in schema["properties"].as_object().expect("properties") {
        let types = p["types"].as_array().expect("types");
        let integer = types.contains(&Value::from("integer"));
        if (integer || types.contains(&Value::from("number")))
            && !p["limits"].as_object().expect("limits").is_empty()
        {
            out.push((name.clone(), integer, p["limits"].clone()));
        }
    }
    out
}

fn accepted(field: &str, value: Value) {
    let line = parse(&body(json!({ field: value.clone() })));
    let kinds = kinds_at(&line, field);
    assert!(kinds.iter().all(|k| k == "not_implemented"), "{field} = {value} rejected: {kinds:?}");
}

fn rejected(field: &str, value: Value, kind: &str) {
    let line = parse(&body(json!({ field: value.clone() })));
    let errs = errors_at(&line, field);
    assert_eq!(errs.len(), 1, "{field} = {value}: {errs:?}");
    assert_eq!(errs[0].kind, kind, "{field} = {value}");
    assert_eq!(loc(&errs[0]), vec![json!("body"), json!(field)]);
}

#[test]
fn every_numeric_limit_just_inside_and_just_outside() {
    let props = numeric_properties();
    let names: Vec<&str> = props.iter().map(|(n, _, _)| n.as_str()).collect();
    for expected in ["cfg_scale", "steps", "num_images", "strength", "clip_skip"] {
        assert!(names.contains(&expected), "{expected} has no limits in schema.json: {names:?}");
    }
    for (name, integer, limits) in props {
        let step = if integer { 1.0 } else { 1e-6 };
        let value = |x: f64| if integer { json!(x as i64) } else { json!(x) };
        if let Some(max) = limits["maximum"].as_f64() {
            accepted(&name, value(max));
            rejected(&name, value(max + step), "less_than_equal");
        }
        if let Some(min) = limits["minimum"].as_f64() {
            accepted(&name, value(min));
            rejected(&name, value(min - step), "greater_than_equal");
        }
        if let Some(min) = limits["exclusiveMinimum"].as_f64() {
            accepted(&name, value(min + step));
            rejected(&name, value(min), "greater_than");
        }
        assert!(limits["exclusiveMaximum"].is_null(), "{name}: exclusiveMaximum not covered here");
    }
}

#[test]
fn every_string_max_length_just_inside_and_just_outside() {
    let schema = schema();
    let mut checked = Vec::new();
    for (name, p) in schema["properties"].as_object().expect("properties") {
        let Some(max) = p["limits"]["maxLength"].as_u64() else { continue };
        // Characters, not bytes: a two-byte character counts once.
        accepted(name, json!("é".repeat(max as usize)));
        rejected(name, json!("é".repeat(max as usize + 1)), "string_too_long");
        checked.push(name.clone());
    }
    checked.sort();
    assert_eq!(checked, ["negative_prompt", "negative_prompt_2", "prompt", "prompt_2"]);
}

#[test]
fn every_field_rejects_a_value_of_the_wrong_type() {
    let schema = schema();
    let mut seen = 0;
    for (name, p) in schema["properties"].as_object().expect("properties") {
        let types: Vec<&str> =
            p["types"].as_array().expect("types").iter().filter_map(Value::as_str).collect();
        let (value, kind) = match types.as_slice() {
            ["string"] => (json!(17), "string_type"),
            ["integer"] => (json!([3]), "int_type"),
            ["number"] => (json!({"a": 1}), "float_type"),
            ["boolean"] => (json!([true]), "bool_type"),
            ["enum"] => (json!("no-such-name"), "enum"),
            ["object"] => (json!([1]), "dict_type"),
            ["integer", "array"] => continue, // seed: its own test
            other => panic!("{name}: types {other:?} not covered"),
        };
        let line = parse(&body(json!({ name.as_str(): value })));
        let kinds = kinds_at(&line, name);
        assert_eq!(kinds, vec![kind], "{name} = {value}");
        seen += 1;
    }
    assert_eq!(seen, 32, "every field but seed");
}

#[test]
fn nullable_fields_accept_null_and_others_reject_it() {
    let schema = schema();
    for (name, p) in schema["properties"].as_object().expect("properties") {
        let line = parse(&body(json!({ name.as_str(): null })));
        let kinds = kinds_at(&line, name);
        if p["nullable"].as_bool() == Some(true) {
            assert!(kinds.is_empty(), "{name}: null rejected: {kinds:?}");
        } else {
            assert_eq!(kinds.len(), 1, "{name}: null accepted");
        }
    }
}

#[test]
fn prompt_is_required() {
    let line = parse(&json!({"steps": 10}));
    let errs = errors(&line);
    assert_eq!(errs.len(), 1);
    assert_eq!((loc(&errs[0]), errs[0].kind.as_str()), (vec![json!("body"), json!("prompt")], "missing"));
    assert_eq!(schema()["required"], json!(["prompt"]));
}

#[test]
fn lax_conversions_give_the_value() {
    let request =
        parse(&body(json!({"steps": "25", "cfg_scale": "7.5", "num_images": 2.0, "outpainting": "no"})))
            .request
            .expect("lax values parse");
    assert_eq!(
        (request.steps, request.cfg_scale, request.num_images(), request.outpainting),
        (Some(25), Some(7.5), 2, false)
    );
}

#[test]
fn every_sampler_name_of_the_spec_parses_and_others_are_enum_errors() {
    let names = schema()["samplers"].clone();
    let names: Vec<&str> = names.as_array().expect("samplers").iter().filter_map(Value::as_str).collect();
    assert_eq!(names.len(), 21);
    for name in &names {
        let request = parse(&body(json!({"sampler": name}))).request.expect(name);
        assert_eq!(request.sampler.map(|s| s.as_str()), Some(*name));
    }
    let line = parse(&body(json!({"sampler": "euler_a"})));
    let errs = errors_at(&line, "sampler");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].kind, "enum");
    for name in &names {
        assert!(errs[0].msg.contains(&format!("'{name}'")), "{name} missing from {}", errs[0].msg);
    }
}

#[test]
fn image_encodings_of_the_spec() {
    let names = schema()["image_encodings"].clone();
    for name in names.as_array().expect("encodings") {
        let request = parse(&body(json!({"image_encoding": name}))).request.expect("encoding");
        let parsed: ImageEncoding = serde_json::from_value(name.clone()).expect("ImageEncoding");
        assert_eq!(request.image_encoding, parsed);
    }
    assert_eq!(kinds_at(&parse(&body(json!({"image_encoding": "webp"}))), "image_encoding"), ["enum"]);
}

#[test]
fn seed_forms() {
    let seeds = |extra: Value| parse(&body(extra)).request.map(|r| r.seeds);
    // One seed: image k uses seed + k.
    assert_eq!(seeds(json!({"seed": 41, "num_images": 3})), Ok(vec![Some(41), Some(42), Some(43)]));
    // A list sets the number of images; nulls are drawn later.
    assert_eq!(seeds(json!({"seed": [5, null, 9]})), Ok(vec![Some(5), None, Some(9)]));
    assert_eq!(seeds(json!({"seed": [5, 6], "num_images": 2})), Ok(vec![Some(5), Some(6)]));
    assert_eq!(seeds(json!({"num_images": 2})), Ok(vec![None, None]));
    assert_eq!(seeds(json!({"seed": null})), Ok(vec![None]));
    // The largest seeds: 2^32 - 1, and a run ending there.
    assert_eq!(seeds(json!({"seed": 4_294_967_295_u64})), Ok(vec![Some(u32::MAX)]));
    assert_eq!(
        seeds(json!({"seed": 4_294_967_294_u64, "num_images": 2})),
        Ok(vec![Some(u32::MAX - 1), Some(u32::MAX)])
    );
}

#[test]
fn seed_errors() {
    let at = |extra: Value| {
        let line = parse(&body(extra));
        errors_at(&line, "seed").into_iter().map(|e| (loc(&e), e.kind)).collect::<Vec<_>>()
    };
    let seed = || json!("seed");
    let b = || json!("body");
    assert_eq!(at(json!({"seed": 0})), [(vec![b(), seed()], "greater_than".to_string())]);
    assert_eq!(at(json!({"seed": -4})), [(vec![b(), seed()], "greater_than".to_string())]);
    assert_eq!(at(json!({"seed": 4_294_967_296_u64})), [(vec![b(), seed()], "less_than".to_string())]);
    assert_eq!(
        at(json!({"seed": [1, 0, 4_294_967_296_u64]})),
        [
            (vec![b(), seed(), json!(1)], "greater_than".to_string()),
            (vec![b(), seed(), json!(2)], "less_than".to_string())
        ]
    );
    // s + k must stay below 2^32.
    assert_eq!(
        at(json!({"seed": 4_294_967_295_u64, "num_images": 2})),
        [(vec![b(), seed()], "value_error".to_string())]
    );
    // A list and a different num_images.
    assert_eq!(
        at(json!({"seed": [1, 2, 3], "num_images": 2})),
        [(vec![b(), seed()], "value_error".to_string())]
    );
    assert_eq!(at(json!({"seed": []})), [(vec![b(), seed()], "too_short".to_string())]);
    assert_eq!(at(json!({"seed": vec![7; 17]})), [(vec![b(), seed()], "too_long".to_string())]);
    // A broken num_images is reported once, on num_images.
    let line = parse(&body(json!({"seed": [1, 2], "num_images": 0})));
    assert!(errors_at(&line, "seed").is_empty());
    assert_eq!(kinds_at(&line, "num_images"), ["greater_than"]);
}

#[test]
fn all_errors_of_a_line_are_collected() {
    let line =
        parse(&json!({"steps": 0, "cfg_scale": 51, "sampler": "x", "seed": 0, "vae": 5, "width": "w"}));
    let fields: Vec<Value> = errors(&line).iter().map(|e| loc(e)[1].clone()).collect();
    for field in ["steps", "cfg_scale", "sampler", "seed", "vae", "width", "prompt"] {
        assert!(fields.contains(&json!(field)), "{field} not reported: {fields:?}");
    }
}

#[test]
fn malformed_json_and_non_objects() {
    for text in ["{\"prompt\": ", "not json", "", "{\"prompt\": \"a\"} trailing"] {
        let line = parse_line(text, 12);
        let errs = errors(&line);
        assert_eq!(errs.len(), 1, "{text:?}");
        assert_eq!((loc(&errs[0]), errs[0].kind.as_str()), (vec![json!("body")], "json_invalid"), "{text:?}");
        assert_eq!(line.id, "12");
    }
    for text in ["[]", "3", "null", "\"a\"", "true"] {
        let errs = errors(&parse_line(text, 2));
        assert_eq!(errs.len(), 1, "{text}");
        assert_eq!((loc(&errs[0]), errs[0].kind.as_str()), (vec![json!("body")], "model_type"), "{text}");
    }
}

#[test]
fn ids() {
    assert_eq!(parse_line(&body(json!({"id": "fox-1"})).to_string(), 3).id, "fox-1");
    assert_eq!(parse_line(&body(json!({})).to_string(), 3).id, "3");
    for bad in [
        json!(5),
        json!(null),
        json!(""),
        json!("../etc"),
        json!("a\\b"),
        json!("tab\there"),
        json!("x".repeat(201)),
    ] {
        let line = parse_line(&body(json!({"id": bad.clone()})).to_string(), 9);
        assert_eq!(line.id, "9", "{bad}");
        let errs = errors_at(&line, "id");
        assert_eq!(errs.len(), 1, "{bad}");
    }
    assert!(parse(&body(json!({"id": "x".repeat(200)}))).request.is_ok());
}

#[test]
fn unknown_fields_are_errors_carrying_their_value() {
    let line = parse(&body(json!({"colour": "red", "promt": "typo"})));
    let errs = errors(&line);
    assert_eq!(errs.len(), 2, "{errs:?}");
    for (e, (field, value)) in errs.iter().zip([("colour", "red"), ("promt", "typo")]) {
        assert_eq!(loc(e), [json!("body"), json!(field)]);
        assert_eq!((e.kind.as_str(), e.msg.as_str()), ("extra_forbidden", "Extra inputs are not permitted"));
        assert_eq!(e.input, Some(json!(value)));
    }
    assert!(line.warnings.is_empty());
    // Every schema field, null, and kiln's own fields are accepted.
    let mut all = serde_json::Map::new();
    for name in schema()["field_order"].as_array().expect("order") {
        all.insert(name.as_str().expect("name").to_string(), Value::Null);
    }
    for name in KILN_FIELDS {
        all.insert(name.into(), json!("x"));
    }
    all.insert("prompt".into(), json!("a lighthouse"));
    let line = parse(&Value::Object(all));
    assert!(errors(&line).iter().all(|e| e.kind != "extra_forbidden"), "{:?}", errors(&line));
}

#[test]
fn checkpoint_is_kept() {
    let request = parse(&body(json!({"checkpoint": "dreamshaper"}))).request.expect("checkpoint");
    assert_eq!(request.checkpoint.as_deref(), Some("dreamshaper"));
}

#[test]
fn field_order_matches_the_spec() {
    // kiln reports errors in the schema's field order, as pydantic does (kiln's own errors too).
    let order: Vec<String> = schema()["field_order"]
        .as_array()
        .expect("order")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let mut bad = serde_json::Map::new();
    for name in &order {
        bad.insert(name.clone(), json!([{"a": 1}]));
    }
    let line = parse(&Value::Object(bad));
    let mut fields: Vec<String> = Vec::new();
    for e in errors(&line) {
        let f = loc(&e)[1].as_str().expect("field").to_string();
        if fields.last() != Some(&f) {
            fields.push(f);
        }
    }
    assert_eq!(fields, order);
}
