//! JSON numbers that serde_json's [`Value`] cannot hold as they were written, read as Python's
//! `json.loads` reads them (FastAPI parses a request body with it before pydantic sees it).
//!
//! serde_json refuses a float beyond f64's range (`1e400`: "number out of range") and turns an
//! integer beyond 64 bits into an f64. Python reads the first as `±inf` and keeps the second an
//! exact `int`, and pydantic judges each field by that: `cfg_scale: 1e400` is
//! `less_than_equal`, `steps: 1e400` is `finite_number`, a 400-digit `steps` is
//! `less_than_equal` and a 400-digit `cfg_scale` is `float_type`. Without this, one such number
//! made the whole line invalid JSON, keyed by its line number instead of its `id`.
//!
//! Only a line that fails to parse, or holds a run of 19 or more digits (the shortest integer
//! serde_json may widen), takes the slow path: the line is split into its values with serde_json's
//! `RawValue` (whose scan checks the syntax but not the range of numbers), each number too wide
//! is put in the tree as a stand-in, and [`WideNumbers`] remembers which values are stand-ins
//! (by address, so a value the user sent can never be mistaken for one).
//!
//! Why not serde_json's `arbitrary_precision` feature: features unify across the workspace, so
//! it would change every `Value` number kiln reads (checkpoint headers, configs) to fix one
//! parser, and it still breaks non-integer numbers under `#[serde(flatten)]` and internally
//! tagged or untagged enums (serde-rs/json#721, open). The coercions would still need the
//! per-field rules above. `raw_value`, used here, only adds a type.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::coerce::Input;
use super::error::Loc;

/// serde_json's nesting limit, kept by the slow path too.
const MAX_DEPTH: usize = 128;

/// A number too wide for serde_json, as Python holds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Wide {
    /// An integer beyond 64 bits (Python keeps it exact); its value rounded to f64, infinite
    /// beyond f64's range (where Python's `float(n)` fails).
    Int(f64),
    /// A float beyond f64's range: `±inf`.
    Float(f64),
}

/// The values of a parsed body that stand in for [`Wide`] numbers.
#[derive(Debug, Default)]
pub(crate) struct WideNumbers<'a>(Vec<(&'a Value, Wide)>);

impl<'a> WideNumbers<'a> {
    /// The wide number `value` stands in for, if it is a stand-in.
    pub fn get(&self, value: &Value) -> Option<Wide> {
        self.0.iter().find(|(v, _)| std::ptr::eq(*v, value)).map(|&(_, wide)| wide)
    }

    /// `value` (from this body) as sent, for the numeric conversions.
    pub fn input<'v>(&self, value: &'v Value) -> Input<'v> {
        self.get(value).map_or(Input::Json(value), Input::Wide)
    }
}

/// A parsed line: its value and where its wide numbers sit (paths from the root).
pub(crate) struct Parsed {
    pub value: Value,
    wide: Vec<(Vec<Loc>, Wide)>,
}

impl Parsed {
    /// The stand-ins of `body` (this line's value, once known to be an object), by address.
    pub fn wide_numbers<'a>(&self, body: &'a Map<String, Value>) -> WideNumbers<'a> {
        let find = |path: &[Loc]| {
            let (Loc::Field(first), rest) = path.split_first()? else { return None };
            rest.iter().try_fold(body.get(first)?, |value, loc| match loc {
                Loc::Field(key) => value.get(key.as_str()),
                Loc::Index(i) => value.get(*i),
            })
        };
        WideNumbers(self.wide.iter().filter_map(|(path, wide)| Some((find(path)?, *wide))).collect())
    }
}

/// Parses one line as `json.loads` would, keeping numbers serde_json cannot hold (see the
/// module's doc). A line that is not JSON gives serde_json's error.
pub(crate) fn parse(text: &str) -> Result<Parsed, serde_json::Error> {
    let fast = match serde_json::from_str::<Value>(text) {
        Ok(value) if !has_long_digit_run(text) => return Ok(Parsed { value, wide: Vec::new() }),
        other => other,
    };
    let mut wide = Vec::new();
    let slow = serde_json::from_str::<&RawValue>(text)
        .ok()
        .and_then(|raw| build(raw.get(), &mut Vec::new(), &mut wide));
    match (slow, fast) {
        (Some(value), _) => Ok(Parsed { value, wide }),
        (None, Ok(value)) => Ok(Parsed { value, wide: Vec::new() }),
        (None, Err(e)) => Err(e),
    }
}

/// Whether `text` holds 19 or more digits in a row: an integer of 19 digits may not fit i64.
fn has_long_digit_run(text: &str) -> bool {
    let mut run = 0;
    text.bytes().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run >= 19
    })
}

/// The value of `raw` (one JSON value, already syntax-checked), recording each wide number's
/// path in `wide`; `None` when it is not valid after all or nests too deep.
fn build(raw: &str, path: &mut Vec<Loc>, wide: &mut Vec<(Vec<Loc>, Wide)>) -> Option<Value> {
    if path.len() > MAX_DEPTH {
        return None;
    }
    match raw.as_bytes().first()? {
        b'{' => {
            let entries = serde_json::Deserializer::from_str(raw).deserialize_map(Entries).ok()?;
            let mut map = Map::new();
            for (key, item) in entries {
                // A repeated key keeps its last value, as json.loads does.
                path.push(Loc::from(key.as_str()));
                wide.retain(|(p, _)| !p.starts_with(&path[..]));
                let value = build(item.get(), path, wide);
                path.pop();
                map.insert(key, value?);
            }
            Some(Value::Object(map))
        }
        b'[' => {
            let items: Vec<&RawValue> = serde_json::from_str(raw).ok()?;
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(Loc::Index(i));
                let value = build(item.get(), path, wide);
                path.pop();
                values.push(value?);
            }
            Some(Value::Array(values))
        }
        b'-' | b'0'..=b'9' => match classify(raw) {
            Some(number) => {
                wide.push((path.clone(), number));
                Some(stand_in(number))
            }
            None => serde_json::from_str(raw).ok(),
        },
        _ => serde_json::from_str(raw).ok(),
    }
}

/// The [`Wide`] number a JSON number token is, or `None` when serde_json holds it as written.
fn classify(token: &str) -> Option<Wide> {
    if token.contains(['.', 'e', 'E']) {
        let x: f64 = token.parse().ok()?;
        return x.is_infinite().then_some(Wide::Float(x));
    }
    if token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok() {
        return None;
    }
    token.parse().ok().map(Wide::Int)
}

/// The value put in the tree for a wide number: the f64 nearest it (the largest finite one
/// beyond f64's range), so code that only asks "is it a number" sees one.
fn stand_in(number: Wide) -> Value {
    let (Wide::Int(x) | Wide::Float(x)) = number;
    Value::Number(Number::from_f64(x.clamp(f64::MIN, f64::MAX)).unwrap_or_else(|| Number::from(0)))
}

/// An object's entries in line order, repeats included, each value unparsed.
struct Entries;

impl<'de> Visitor<'de> for Entries {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value::<&RawValue>()?));
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide_of(text: &str, field: &str) -> Option<Wide> {
        let parsed = parse(text).expect("parses");
        let Value::Object(body) = &parsed.value else { panic!("not an object") };
        parsed.wide_numbers(body).get(&body[field])
    }

    #[test]
    fn numbers_serde_json_cannot_hold_are_kept_as_python_reads_them() {
        assert_eq!(wide_of(r#"{"a": 1e400}"#, "a"), Some(Wide::Float(f64::INFINITY)));
        assert_eq!(wide_of(r#"{"a": -1.5E+400}"#, "a"), Some(Wide::Float(f64::NEG_INFINITY)));
        let big = format!("1{}", "0".repeat(399));
        assert_eq!(wide_of(&format!(r#"{{"a": {big}}}"#), "a"), Some(Wide::Int(f64::INFINITY)));
        assert_eq!(wide_of(r#"{"a": -10000000000000000000}"#, "a"), Some(Wide::Int(-1e19)));
        // What serde_json holds exactly is not wide.
        assert_eq!(wide_of(r#"{"a": 18446744073709551615, "b": 1e-400}"#, "a"), None);
        assert_eq!(wide_of(r#"{"a": -9223372036854775808}"#, "a"), None);
    }

    #[test]
    fn nested_and_repeated_keys_follow_json_loads() {
        let text = r#"{"s": [1, 1e400], "d": {"k": 1e999}, "e": {"k": 1}, "r": 1e400, "r": 2}"#;
        let parsed = parse(text).expect("parses");
        let Value::Object(body) = &parsed.value else { panic!() };
        let wide = parsed.wide_numbers(body);
        assert_eq!(wide.get(&body["s"][1]), Some(Wide::Float(f64::INFINITY)));
        assert_eq!(wide.get(&body["d"]["k"]), Some(Wide::Float(f64::INFINITY)));
        assert_eq!(wide.get(&body["r"]), None);
        assert_eq!(body["r"], 2);
        // A value the user sent equal to a stand-in is not one.
        let parsed = parse(r#"{"a": 1.7976931348623157e308, "b": 1e400}"#).expect("parses");
        let Value::Object(body) = &parsed.value else { panic!() };
        assert_eq!(body["a"], body["b"]);
        assert_eq!(parsed.wide_numbers(body).get(&body["a"]), None);
    }

    #[test]
    fn invalid_json_stays_invalid() {
        for text in ["{\"a\": 1e400", "{\"a\": 1e400,}", "[1e400] x", "{\"a\": \"\\ud800\", \"b\": 1e400}"] {
            assert!(parse(text).is_err(), "{text}");
        }
        let deep = format!("{}1e400{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).is_err());
    }
}
