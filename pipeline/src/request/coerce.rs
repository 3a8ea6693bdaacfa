//! pydantic v2's lax ("Python mode") conversions of JSON values, as FastAPI applies them to a
//! request body: `"25"` and `25.0` are valid integers, `"7.5"` and `true` valid numbers, `"yes"`
//! and `0` valid booleans; strings are never made from numbers. Each function returns the
//! value or the pydantic error (type and message) at the caller's location.

use serde_json::Value;

use super::wide::Wide;

/// A pydantic error without its location.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Issue {
    pub kind: &'static str,
    pub msg: String,
}

impl Issue {
    pub fn new(kind: &'static str, msg: impl Into<String>) -> Issue {
        Issue { kind, msg: msg.into() }
    }
}

/// Integers up to pydantic's float-to-int limit (larger floats are `int_parsing_size`).
const FLOAT_INT_LIMIT: f64 = 9.223_372_036_854_776e18; // 2^63

/// One value as sent: serde_json's, or the number it stands in for when serde_json could not
/// hold it (see [`super::wide`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Input<'a> {
    Json(&'a Value),
    Wide(Wide),
}

/// pydantic's `int` in lax mode.
pub(crate) fn int(input: Input<'_>) -> Result<i128, Issue> {
    let value = match input {
        Input::Json(value) => value,
        // Python's exact int: past every limit kiln checks, so saturating keeps each verdict.
        Input::Wide(Wide::Int(x)) => return Ok(if x < 0.0 { i128::MIN } else { i128::MAX }),
        Input::Wide(Wide::Float(x)) => return int_from_float(x),
    };
    match value {
        Value::Bool(b) => Ok(i128::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                Ok(i128::from(u))
            } else {
                int_from_float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => int_from_str(s).ok_or_else(|| {
            Issue::new("int_parsing", "Input should be a valid integer, unable to parse string as an integer")
        }),
        _ => Err(Issue::new("int_type", "Input should be a valid integer")),
    }
}

fn int_from_float(f: f64) -> Result<i128, Issue> {
    if !f.is_finite() {
        return Err(Issue::new("finite_number", "Input should be a finite number"));
    }
    if f.abs() >= FLOAT_INT_LIMIT {
        return Err(Issue::new(
            "int_parsing_size",
            "Unable to parse input string as an integer, exceeded maximum size",
        ));
    }
    if f.fract() != 0.0 {
        return Err(Issue::new(
            "int_from_float",
            "Input should be a valid integer, got a number with a fractional part",
        ));
    }
    Ok(f as i128)
}

/// Python's `int(s)` rules as pydantic applies them: surrounding whitespace, a sign, digits with
/// single underscores between them, and an optional `.000` tail.
fn int_from_str(s: &str) -> Option<i128> {
    let s = s.trim();
    let s = match s.split_once('.') {
        Some((whole, zeros)) if !zeros.is_empty() && zeros.bytes().all(|b| b == b'0') => whole,
        Some(_) => return None,
        None => s,
    };
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    // Beyond i128: saturate (every limit kiln checks is far smaller).
    let magnitude = cleaned.parse::<i128>().unwrap_or(i128::MAX);
    Some(if negative { -magnitude } else { magnitude })
}

/// pydantic's `float` in lax mode.
pub(crate) fn float(input: Input<'_>) -> Result<f64, Issue> {
    let value = match input {
        Input::Json(value) => value,
        // Python's float(n) of an int beyond f64's range fails; pydantic calls it a type error.
        Input::Wide(Wide::Int(x)) if x.is_infinite() => {
            return Err(Issue::new("float_type", "Input should be a valid number"));
        }
        Input::Wide(Wide::Int(x) | Wide::Float(x)) => return Ok(x),
    };
    match value {
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => float_from_str(s).ok_or_else(|| {
            Issue::new("float_parsing", "Input should be a valid number, unable to parse string as a number")
        }),
        _ => Err(Issue::new("float_type", "Input should be a valid number")),
    }
}

/// Python's `float(s)`: whitespace, underscores between digits, `nan`, `inf`, `infinity`.
fn float_from_str(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    cleaned.parse::<f64>().ok()
}

/// pydantic's `bool` in lax mode.
pub(crate) fn boolean(value: &Value) -> Result<bool, Issue> {
    let parsing = || Issue::new("bool_parsing", "Input should be a valid boolean, unable to interpret input");
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Ok(false),
            Some(1.0) => Ok(true),
            _ if n.is_f64() => Err(Issue::new("bool_type", "Input should be a valid boolean")),
            _ => Err(parsing()),
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Ok(true),
            _ => Err(parsing()),
        },
        _ => Err(Issue::new("bool_type", "Input should be a valid boolean")),
    }
}

/// pydantic's `str` (with `max_length` in characters, i.e. Unicode scalar values).
pub(crate) fn string(value: &Value, max_length: Option<usize>) -> Result<String, Issue> {
    let Value::String(s) = value else {
        return Err(Issue::new("string_type", "Input should be a valid string"));
    };
    if let Some(max) = max_length
        && s.chars().count() > max
    {
        return Err(Issue::new("string_too_long", format!("String should have at most {max} characters")));
    }
    Ok(s.clone())
}

/// A string enum: the index of `value` in `names`, or pydantic's `enum` error listing them.
pub(crate) fn one_of(value: &Value, names: &[&str]) -> Result<usize, Issue> {
    value
        .as_str()
        .and_then(|s| names.iter().position(|n| *n == s))
        .ok_or_else(|| Issue::new("enum", format!("Input should be {}", enum_list(names))))
}

/// `'a', 'b' or 'c'`, as pydantic lists enum members.
pub(crate) fn enum_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Numeric limits, checked in pydantic's order (le, lt, ge, gt) so NaN fails the first one.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    pub le: Option<f64>,
    pub lt: Option<f64>,
    pub ge: Option<f64>,
    pub gt: Option<f64>,
}

impl Limits {
    /// Checks `x`, returning pydantic's error for the first limit it breaks.
    pub fn check(&self, x: f64) -> Result<(), Issue> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        if let Some(le) = self.le
            && !matches!(x.partial_cmp(&le), Some(Less | Equal))
        {
            return Err(Issue::new(
                "less_than_equal",
                format!("Input should be less than or equal to {}", num(le)),
            ));
        }
        if let Some(lt) = self.lt
            && x.partial_cmp(&lt) != Some(Less)
        {
            return Err(Issue::new("less_than", format!("Input should be less than {}", num(lt))));
        }
        if let Some(ge) = self.ge
            && !matches!(x.partial_cmp(&ge), Some(Greater | Equal))
        {
            return Err(Issue::new(
                "greater_than_equal",
                format!("Input should be greater than or equal to {}", num(ge)),
            ));
        }
        if let Some(gt) = self.gt
            && x.partial_cmp(&gt) != Some(Greater)
        {
            return Err(Issue::new("greater_than", format!("Input should be greater than {}", num(gt))));
        }
        Ok(())
    }
}

/// A limit as pydantic prints it: `0`, `50`, `0.5`.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 { format!("{}", x as i64) } else { format!("{x}") }
}
