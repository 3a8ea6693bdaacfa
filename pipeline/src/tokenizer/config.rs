//! The special tokens of a diffusers `tokenizer/` folder, from its `tokenizer_config.json`.

use std::path::Path;

use serde_json::Value;

use super::{CONTEXT_LEN, TokenizerError};

/// One special token as configured: its text and whether it is matched after normalization.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ConfiguredToken {
    pub content: String,
    pub normalized: bool,
}

/// The four special tokens CLIP's tokenizer uses.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SpecialConfig {
    pub bos: ConfiguredToken,
    pub eos: ConfiguredToken,
    pub unk: ConfiguredToken,
    pub pad: ConfiguredToken,
}

impl SpecialConfig {
    /// OpenAI CLIP-L's published tokenizer (SD 1.5; SDXL's first tokenizer): pads with
    /// `<|endoftext|>`, which (given as a plain string) is matched in the raw text.
    pub(crate) fn clip_l() -> SpecialConfig {
        SpecialConfig::with_pad(ConfiguredToken { content: "<|endoftext|>".into(), normalized: false })
    }

    /// SDXL's `tokenizer_2` (OpenCLIP-G): pads with `!`, matched in the raw text.
    pub(crate) fn open_clip_g() -> SpecialConfig {
        SpecialConfig::with_pad(ConfiguredToken { content: "!".into(), normalized: false })
    }

    fn with_pad(pad: ConfiguredToken) -> SpecialConfig {
        let token = |s: &str| ConfiguredToken { content: s.into(), normalized: true };
        SpecialConfig {
            bos: token("<|startoftext|>"),
            eos: token("<|endoftext|>"),
            unk: token("<|endoftext|>"),
            pad,
        }
    }

    /// Reads `tokenizer_config.json`; absent fields keep CLIP-L's values.
    pub(crate) fn read(path: &Path) -> Result<SpecialConfig, TokenizerError> {
        let text = kiln_runtime::files::read_regular_to_string(path)
            .map_err(|source| TokenizerError::Io { path: path.into(), source })?;
        let parse = |reason: String| TokenizerError::Parse { path: path.into(), reason };
        let json: Value = serde_json::from_str(&text).map_err(|e| parse(format!("not valid JSON: {e}")))?;
        // kiln always tokenizes into CLIP's 77 positions (the text encoders' own limit), so a
        // tokenizer that claims fewer would silently read prompts differently from transformers.
        match json.get("model_max_length") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_f64().is_some_and(|n| n >= CONTEXT_LEN as f64) => {}
            Some(v) => {
                return Err(parse(format!("`model_max_length` must be at least {CONTEXT_LEN}, found {v}")));
            }
        }
        let mut config = SpecialConfig::clip_l();
        for (key, slot) in [
            ("bos_token", &mut config.bos),
            ("eos_token", &mut config.eos),
            ("unk_token", &mut config.unk),
            ("pad_token", &mut config.pad),
        ] {
            match json.get(key) {
                None | Some(Value::Null) => {}
                // A plain string becomes a special token matched in the raw text.
                Some(Value::String(s)) => *slot = ConfiguredToken { content: s.clone(), normalized: false },
                Some(Value::Object(o)) => {
                    let content = o.get("content").and_then(Value::as_str);
                    let content = content.ok_or_else(|| parse(format!("`{key}` has no string `content`")))?;
                    let normalized = o.get("normalized").and_then(Value::as_bool).unwrap_or(false);
                    *slot = ConfiguredToken { content: content.into(), normalized };
                }
                Some(other) => {
                    return Err(parse(format!("`{key}` must be a string or an object, found {other}")));
                }
            }
        }
        Ok(config)
    }

    /// The tokens in the order they are registered; a later one with the same text decides
    /// whether it is matched normalized (transformers registers pad after bos, eos and unk).
    pub(crate) fn in_order(&self) -> [&ConfiguredToken; 4] {
        [&self.bos, &self.eos, &self.unk, &self.pad]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<SpecialConfig, TokenizerError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer_config.json");
        std::fs::write(&path, text).unwrap();
        SpecialConfig::read(&path)
    }

    #[test]
    fn a_model_max_length_below_clips_positions_is_refused() {
        for text in [r#"{"model_max_length": 20}"#, r#"{"model_max_length": "77"}"#] {
            let e = read(text).unwrap_err().to_string();
            assert!(e.contains("tokenizer_config.json") && e.contains("`model_max_length`"), "{e}");
        }
        // transformers writes 77 for CLIP, and int(1e30) for "no limit".
        for text in
            [r#"{"model_max_length": 77}"#, r#"{"model_max_length": 1000000000000000019884624838656}"#]
        {
            assert_eq!(read(text).unwrap(), SpecialConfig::clip_l(), "{text}");
        }
    }
}
