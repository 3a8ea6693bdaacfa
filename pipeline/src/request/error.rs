//! OctoAI's 422 body: a list of field errors in the shape pydantic v2 / FastAPI report them.
//!
//! `{"detail": [{"loc": ["body", "steps"], "msg": "Input should be less than or equal to 200",
//! "type": "less_than_equal"}]}`. Error types and messages follow pydantic v2's wording, so a
//! client that already handles OctoAI's validation errors handles kiln's. Two types are kiln's
//! own: `not_implemented` (a field of the API kiln does not implement yet) and `value_error`
//! messages for rules that OctoAI states only in prose (seed ranges, sizes per model family).

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// One element of an error location: a field name or a list index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Loc {
    /// A field name (or pydantic's name of a union member, such as `int`).
    Field(String),
    /// An index into a list.
    Index(usize),
}

impl From<&str> for Loc {
    fn from(name: &str) -> Loc {
        Loc::Field(name.to_string())
    }
}

impl From<usize> for Loc {
    fn from(index: usize) -> Loc {
        Loc::Index(index)
    }
}

/// One field's validation error, as in pydantic's `ValidationError.errors()`; `input` (the value
/// refused) is kept only for unknown fields, where it is what a person needs to find the typo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where: `["body", field, ...]` (`["body"]` for the body as a whole).
    pub loc: Vec<Loc>,
    /// What is wrong, for a person.
    pub msg: String,
    /// pydantic's error type (`missing`, `int_type`, `less_than_equal`, ...), for programs.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value refused, for `extra_forbidden` (an unknown field's value); `None` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

impl FieldError {
    /// An error at `body` followed by `path`.
    pub fn at(path: &[Loc], msg: impl Into<String>, kind: &str) -> FieldError {
        let mut loc = vec![Loc::from("body")];
        loc.extend_from_slice(path);
        FieldError { loc, msg: msg.into(), kind: kind.to_string(), input: None }
    }

    /// pydantic's `extra_forbidden`: `field` is not in the schema (`additionalProperties: false`).
    pub fn extra_forbidden(field: &str, value: &Value) -> FieldError {
        FieldError {
            input: Some(value.clone()),
            ..FieldError::at(&[Loc::from(field)], "Extra inputs are not permitted", "extra_forbidden")
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path: Vec<String> = self
            .loc
            .iter()
            .map(|l| match l {
                Loc::Field(s) => s.clone(),
                Loc::Index(i) => i.to_string(),
            })
            .collect();
        write!(f, "{}: {} ({})", path.join("."), self.msg, self.kind)
    }
}

/// Why a request cannot run: every field error found, as OctoAI's 422 body `{"detail": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct RequestError {
    /// The field errors, in the order pydantic would list them (fields in schema order, then
    /// the rules that involve several fields).
    pub detail: Vec<FieldError>,
}

impl RequestError {
    /// One error on the top-level field `field`.
    pub fn field(field: &str, msg: impl Into<String>, kind: &str) -> RequestError {
        RequestError { detail: vec![FieldError::at(&[Loc::from(field)], msg, kind)] }
    }

    /// One error about the body as a whole (`loc: ["body"]`).
    pub fn body(msg: impl Into<String>, kind: &str) -> RequestError {
        RequestError { detail: vec![FieldError::at(&[], msg, kind)] }
    }

    /// `field` is part of OctoAI's API but kiln does not implement it yet.
    pub fn not_implemented(field: &str, what: &str) -> RequestError {
        RequestError { detail: vec![not_implemented(field, what)] }
    }

    /// Whether no error was found.
    pub fn is_empty(&self) -> bool {
        self.detail.is_empty()
    }

    /// Adds one error.
    pub fn push(&mut self, error: FieldError) {
        self.detail.push(error);
    }

    /// `Ok(value)` when no error was found, else `Err(self)`.
    pub fn or_ok<T>(self, value: T) -> Result<T, RequestError> {
        if self.detail.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.detail.iter().map(|e| e.to_string()).collect();
        f.write_str(&parts.join("; "))
    }
}

/// The `not_implemented` error for `field`; `what` says which value kiln cannot honour.
pub fn not_implemented(field: &str, what: &str) -> FieldError {
    FieldError::at(
        &[Loc::from(field)],
        format!("kiln does not implement {field} yet ({what}); remove the field or send its default"),
        "not_implemented",
    )
}

/// pydantic's `value_error` (a custom validator's error): the message starts with "Value error, ".
pub fn value_error(path: &[Loc], msg: impl fmt::Display) -> FieldError {
    FieldError::at(path, format!("Value error, {msg}"), "value_error")
}
