//! parse_line never panics: thousands of seeded random lines (random JSON values in every
//! schema field, truncated and corrupted valid lines) each give a request or a well-formed error.

mod request_common;

use kiln_pipeline::request::parse_line;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use request_common::{loc, schema};
use serde_json::{Map, Value, json};

fn random_value(rng: &mut StdRng, depth: usize) -> Value {
    match rng.random_range(0..if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(rng.random_range(-5_000_000_000_i64..5_000_000_000)),
        3 => json!(rng.random_range(-300.0..300.0)),
        4 => {
            let picks = ["", "30", " 7.5 ", "yes", "DDIM", "png", "Pokémon", "nan", "1_0", "é", "x\u{0}y"];
            json!(picks[rng.random_range(0..picks.len())])
        }
        5 => json!(u64::MAX - rng.random_range(0..10)),
        6 => Value::Array((0..rng.random_range(0..4)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => {
            let mut map = Map::new();
            for i in 0..rng.random_range(0..3) {
                map.insert(format!("k{i}"), random_value(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

#[test]
fn random_lines_never_panic_and_errors_are_well_formed() {
    let fields: Vec<String> = schema()["field_order"]
        .as_array()
        .expect("order")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .chain(["id".to_string(), "ip_adapter".to_string(), "extra".to_string()])
        .collect();
    let mut rng = StdRng::seed_from_u64(0x6b696c6e);
    let (mut ok, mut failed) = (0, 0);
    for n in 1..=4000 {
        let mut body = Map::new();
        body.insert("prompt".into(), json!("a quiet harbour"));
        for _ in 0..rng.random_range(0..6) {
            let field = &fields[rng.random_range(0..fields.len())];
            body.insert(field.clone(), random_value(&mut rng, 0));
        }
        let mut text = Value::Object(body).to_string();
        // A random char boundary, to cut or corrupt the line there.
        let cut =
            text.char_indices().map(|(i, _)| i).nth(rng.random_range(0..text.chars().count())).unwrap_or(0);
        match rng.random_range(0..4) {
            0 => text.truncate(cut),
            1 => text.insert(cut, '"'),
            _ => {}
        }
        let line = parse_line(&text, n);
        match &line.request {
            Ok(request) => {
                ok += 1;
                assert!((1..=16).contains(&request.num_images()), "{text}");
            }
            Err(error) => {
                failed += 1;
                assert!(!error.detail.is_empty(), "{text}");
                for e in &error.detail {
                    assert_eq!(loc(e)[0], json!("body"), "{text}");
                    assert!(!e.msg.is_empty() && !e.kind.is_empty(), "{text}");
                }
            }
        }
        assert!(!line.id.is_empty());
    }
    assert!(ok > 100 && failed > 100, "ok {ok}, failed {failed}");
}
