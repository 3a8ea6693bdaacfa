//! Fields outside OctoAI's schema. `ImageGenerationRequest` says `additionalProperties: false`,
//! so, as pydantic with `extra="forbid"` does, each unknown top-level key is an
//! `extra_forbidden` error at `["body", KEY]` carrying the value sent, listed after every error
//! of the schema's fields, in the order the keys appear in the line. kiln's own fields
//! ([`KILN_FIELDS`]) and IP-Adapter's (a `not_implemented` error when set) are not unknown.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::error::FieldError;
use super::parse::KNOWN_FIELDS;
use super::unimplemented;

/// kiln's own request fields, accepted beside the schema's: `id` names the request, `engine`
/// says which OctoAI engine it targets.
pub const KILN_FIELDS: [&str; 2] = ["id", "engine"];

/// Whether `key` is neither a schema field, nor kiln's own, nor an IP-Adapter field.
fn is_unknown(key: &str) -> bool {
    !KNOWN_FIELDS.contains(&key)
        && !KILN_FIELDS.contains(&key)
        && !super::ip::IP_FIELDS.contains(&key)
        && !unimplemented::is_ip_adapter(key)
}

/// One `extra_forbidden` error per unknown key of `body`, in the order of the keys in `text`
/// (the line `body` was parsed from; serde_json's map sorts its keys).
pub(crate) fn extra_forbidden(text: &str, body: &Map<String, Value>) -> Vec<FieldError> {
    let mut unknown: Vec<&String> = body.keys().filter(|k| is_unknown(k)).collect();
    if unknown.len() > 1 {
        let order = keys_in_order(text);
        unknown.sort_by_key(|k| order.iter().position(|o| o == *k));
    }
    unknown.into_iter().map(|k| FieldError::extra_forbidden(k, &body[k.as_str()])).collect()
}

/// The top-level keys of the JSON object `text`, each once, where it first appears (a repeated
/// key keeps its first place and its last value, as Python's `json.loads` does); empty when
/// `text` is not an object.
fn keys_in_order(text: &str) -> Vec<String> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys: Vec<String> = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            Ok(keys)
        }
    }
    serde_json::Deserializer::from_str(text).deserialize_map(Keys).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_line_order_and_the_first_place_of_a_repeat() {
        let text = r#"{"zeta": 1, "alpha": {"nested": [1, 2]}, "mid": null, "zeta": 2}"#;
        assert_eq!(keys_in_order(text), ["zeta", "alpha", "mid"]);
        assert!(keys_in_order("[1, 2]").is_empty());
    }

    #[test]
    fn kiln_and_ip_adapter_fields_are_not_unknown() {
        assert!(!is_unknown("id") && !is_unknown("prompt") && !is_unknown("ip_adapter_image"));
        assert!(is_unknown("negative_promt") && is_unknown("Prompt"));
    }
}
