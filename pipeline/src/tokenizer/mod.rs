//! CLIP's BPE tokenizer, behaving as transformers' `CLIPTokenizer` does without ftfy (the
//! tokenizer diffusers runs): special tokens cut out, NFC, whitespace collapsed, lower case,
//! CLIP's word pattern, byte-level BPE; `<|startoftext|>` 49406 and `<|endoftext|>` 49407 around
//! the prompt; 77-token windows padded with the tokenizer's own pad token (`<|endoftext|>` for
//! CLIP-L, `!` = 0 for SDXL's OpenCLIP-G `tokenizer_2`).
//!
//! The vocabulary is built into the crate (OpenAI's merges; the vocabulary is derived from them
//! as CLIP does), and a diffusers folder's `vocab.json` / `merges.txt` / `tokenizer_config.json`
//! are read instead when present. Long prompts are cut into several windows as AUTOMATIC1111
//! does: see [`WindowOptions`]; [`ClipTokenizer::weighted_windows`] also reads its prompt
//! weighting syntax (see [`crate::prompt`]) and gives each token its weight.

mod bpe;
mod config;
mod text;
mod windows;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::{Checkpoint, Component, Format};
use regex::Regex;

use crate::prompt::{PromptError, Segment, parse_attention};
use config::SpecialConfig;
use text::{Piece, SpecialToken};
pub use windows::{WeightedWindows, WindowOptions, Windows};

/// OpenAI CLIP's merges (`bpe_simple_vocab_16e6`, as diffusers folders ship them in merges.txt).
const EMBEDDED_MERGES: &str = include_str!("../../assets/clip_merges.txt");

/// Positions of the CLIP text encoders: BOS, 75 prompt tokens, EOS.
pub const CONTEXT_LEN: usize = 77;

/// A tokenizer file that cannot be read or does not parse.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's contents are not what a CLIP tokenizer needs.
    #[error("tokenizer file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// CLIP's tokenizer: text to token ids, single 77-token windows, or A1111-style windows.
#[derive(Debug)]
pub struct ClipTokenizer {
    bpe: bpe::Bpe,
    /// Matched in the raw text.
    raw_specials: Vec<SpecialToken>,
    /// Matched in the normalized text.
    normalized_specials: Vec<SpecialToken>,
    /// Words added to the vocabulary (textual-inversion triggers), matched in the normalized
    /// text; each stands for the ids in `expansions` (one per embedding vector).
    added: Vec<SpecialToken>,
    expansions: HashMap<u32, Vec<u32>>,
    /// Every vocabulary entry, for [`ClipTokenizer::knows`].
    vocab: HashMap<String, u32>,
    whitespace: Regex,
    words: Regex,
    bos: u32,
    eos: u32,
    pad: u32,
    comma: Option<u32>,
}

impl ClipTokenizer {
    /// The built-in tokenizer of `component`'s published model: CLIP-L's (pads with
    /// `<|endoftext|>`) for [`Component::TextEncoder`], OpenCLIP-G's `tokenizer_2` (pads with
    /// `!`) for [`Component::TextEncoder2`].
    pub fn embedded(component: Component) -> ClipTokenizer {
        let specials = if component == Component::TextEncoder2 {
            SpecialConfig::open_clip_g()
        } else {
            SpecialConfig::clip_l()
        };
        let path = Path::new("<embedded clip_merges.txt>");
        let merges = bpe::parse_merges(EMBEDDED_MERGES, path).expect("the embedded merges parse");
        let vocab = bpe::vocab_from_merges(&merges);
        ClipTokenizer::build(vocab, &merges, &specials, path, path)
            .expect("the embedded vocabulary is complete")
    }

    /// Reads a diffusers tokenizer folder: `vocab.json`, `merges.txt` and (optional)
    /// `tokenizer_config.json`. Errors name the file that is missing or does not parse.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<ClipTokenizer, TokenizerError> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            let path = dir.join(name);
            kiln_runtime::files::read_regular_to_string(&path)
                .map(|t| (t, path.clone()))
                .map_err(|source| TokenizerError::Io { path, source })
        };
        let (vocab_text, vocab_path) = read("vocab.json")?;
        let vocab: HashMap<String, u32> =
            serde_json::from_str(&vocab_text).map_err(|e| TokenizerError::Parse {
                path: vocab_path.clone(),
                reason: format!("not a JSON object of token -> id: {e}"),
            })?;
        let (merges_text, merges_path) = read("merges.txt")?;
        let merges = bpe::parse_merges(&merges_text, &merges_path)?;
        let config_path = dir.join("tokenizer_config.json");
        let specials =
            if config_path.exists() { SpecialConfig::read(&config_path)? } else { SpecialConfig::clip_l() };
        ClipTokenizer::build(vocab, &merges, &specials, &vocab_path, &merges_path)
    }

    /// The tokenizer for `component` of `ckpt`: the folder's `tokenizer/` (or `tokenizer_2/`)
    /// when the checkpoint is a diffusers folder that has one, else [`ClipTokenizer::embedded`].
    pub fn for_checkpoint(ckpt: &Checkpoint, component: Component) -> Result<ClipTokenizer, TokenizerError> {
        let folder = if component == Component::TextEncoder2 { "tokenizer_2" } else { "tokenizer" };
        let dir = ckpt.path().join(folder);
        if ckpt.format() == Format::Diffusers && dir.join("vocab.json").exists() {
            ClipTokenizer::from_dir(dir)
        } else {
            Ok(ClipTokenizer::embedded(component))
        }
    }

    fn build(
        vocab: HashMap<String, u32>,
        merges: &[(String, String)],
        specials: &SpecialConfig,
        vocab_path: &Path,
        merges_path: &Path,
    ) -> Result<ClipTokenizer, TokenizerError> {
        let bpe = bpe::Bpe::new(&vocab, merges, vocab_path, merges_path)?;
        let id = |content: &str| {
            vocab.get(content).copied().ok_or_else(|| TokenizerError::Parse {
                path: vocab_path.into(),
                reason: format!("special token {content:?} is not in the vocabulary"),
            })
        };
        // One entry per distinct text; the last registration decides how it is matched.
        let mut all: Vec<SpecialToken> = Vec::new();
        for t in specials.in_order() {
            let token =
                SpecialToken { content: t.content.clone(), id: id(&t.content)?, normalized: t.normalized };
            match all.iter_mut().find(|s| s.content == t.content) {
                Some(existing) => *existing = token,
                None => all.push(token),
            }
        }
        let (normalized_specials, raw_specials) = all.into_iter().partition(|s| s.normalized);
        Ok(ClipTokenizer {
            raw_specials,
            normalized_specials,
            added: Vec::new(),
            expansions: HashMap::new(),
            whitespace: text::whitespace_pattern(),
            words: text::word_pattern(),
            bos: id(&specials.bos.content)?,
            eos: id(&specials.eos.content)?,
            pad: id(&specials.pad.content)?,
            comma: vocab.get(",</w>").copied(),
            bpe,
            vocab,
        })
    }

    /// The vocabulary's size: the first id free for added words.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Whether `word` is a vocabulary entry or a special token as written (diffusers' check
    /// before it adds a textual-inversion token), or once lower-cased.
    pub fn knows(&self, word: &str) -> bool {
        let lower = word.to_lowercase();
        self.vocab.contains_key(word) || self.vocab.contains_key(&lower)
    }

    /// Adds words to the vocabulary, replacing any added before: each `(word, ids)` is matched
    /// in the normalized text wherever it occurs (case-insensitively, inside other words too, as
    /// transformers matches added tokens) and stands for all its `ids`, one per vector of a
    /// textual-inversion embedding. (diffusers expands a multi-vector word into `word word_1 …`
    /// in the prompt text before tokenizing, which finds the word only when it is written in
    /// lower case; kiln expands every occurrence.)
    pub fn set_added_words(&mut self, words: &[(String, Vec<u32>)]) {
        self.added = words
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(word, ids)| SpecialToken {
                content: text::normalize(word, &self.whitespace),
                id: ids[0],
                normalized: true,
            })
            .collect();
        self.expansions = words
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(_, ids)| (ids[0], ids[1..].to_vec()))
            .collect();
    }

    /// Start-of-text id (49406).
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// End-of-text id (49407).
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Padding id: 49407 for CLIP-L, 0 (`!`) for OpenCLIP-G's tokenizer_2.
    pub fn pad(&self) -> u32 {
        self.pad
    }

    /// The prompt's token ids without BOS/EOS, untruncated.
    pub fn tokens(&self, prompt: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let raw: Vec<&SpecialToken> = self.raw_specials.iter().collect();
        let normalized: Vec<&SpecialToken> = self.normalized_specials.iter().chain(&self.added).collect();
        for piece in text::split_specials(prompt, &raw) {
            let segment = match piece {
                Piece::Special(id) => {
                    out.push(id);
                    continue;
                }
                Piece::Text(segment) => text::normalize(segment, &self.whitespace),
            };
            for inner in text::split_specials(&segment, &normalized) {
                match inner {
                    Piece::Special(id) => {
                        out.push(id);
                        out.extend(self.expansions.get(&id).into_iter().flatten());
                    }
                    Piece::Text(t) => {
                        for word in self.words.find_iter(t) {
                            self.bpe.encode_word(word.as_str(), &mut out);
                        }
                    }
                }
            }
        }
        out
    }

    /// BOS, the prompt's tokens, EOS: untruncated, unpadded.
    pub fn encode(&self, prompt: &str) -> Vec<u32> {
        let mut ids = vec![self.bos];
        ids.extend(self.tokens(prompt));
        ids.push(self.eos);
        ids
    }

    /// One 77-token window as diffusers builds it (`padding="max_length", truncation=True`):
    /// BOS, the first 75 prompt tokens, EOS, padding. Tokens past 75 are silently cut, as
    /// diffusers does; [`ClipTokenizer::windows`] keeps them.
    pub fn encode_padded(&self, prompt: &str) -> Vec<u32> {
        let tokens = self.tokens(prompt);
        let keep = tokens.len().min(CONTEXT_LEN - 2);
        let mut ids = Vec::with_capacity(CONTEXT_LEN);
        ids.push(self.bos);
        ids.extend_from_slice(&tokens[..keep]);
        ids.push(self.eos);
        ids.resize(CONTEXT_LEN, self.pad);
        ids
    }

    /// The prompt as A1111-style windows (see [`WindowOptions`]); tokens beyond the last
    /// window are dropped and counted in [`Windows::dropped_tokens`].
    pub fn windows(&self, prompt: &str, opts: WindowOptions) -> Windows {
        self.split_windows(&self.tokens(prompt), opts)
    }

    /// [`ClipTokenizer::windows`] over already tokenized prompt tokens (no BOS/EOS).
    pub fn split_windows(&self, tokens: &[u32], opts: WindowOptions) -> Windows {
        let ids = windows::WindowIds { bos: self.bos, eos: self.eos, pad: self.pad, comma: self.comma };
        windows::split(tokens, ids, opts)
    }

    /// The prompt as A1111-style windows with per-token weights: the prompt is parsed as
    /// AUTOMATIC1111's attention syntax ([`parse_attention`]), each segment is tokenized on its
    /// own, `BREAK` starts a new window. A prompt without weighting syntax gives the windows of
    /// [`ClipTokenizer::windows`], all weights 1. Fails on a weight that is not a number.
    pub fn weighted_windows(
        &self,
        prompt: &str,
        opts: WindowOptions,
    ) -> Result<WeightedWindows, PromptError> {
        Ok(self.split_segments(&parse_attention(prompt)?, opts))
    }

    /// The prompt as diffusers' single window ([`WindowOptions::TRUNCATE`]: the first 75
    /// tokens, the rest dropped and counted) with A1111's per-token weights. `BREAK` is the
    /// word "break", as diffusers reads it: with one window there is no next one to start.
    pub fn weighted_truncated(&self, prompt: &str) -> Result<WeightedWindows, PromptError> {
        let segments: Vec<Segment> = parse_attention(prompt)?
            .into_iter()
            .map(|s| if s.is_break() { Segment { text: s.text, weight: 1.0 } } else { s })
            .collect();
        Ok(self.split_segments(&segments, WindowOptions::TRUNCATE))
    }

    /// [`ClipTokenizer::weighted_windows`] over already parsed segments.
    pub fn split_segments(&self, segments: &[Segment], opts: WindowOptions) -> WeightedWindows {
        let mut items = Vec::new();
        for segment in segments {
            if segment.is_break() {
                items.push(windows::Item::Break);
            } else {
                let weight = segment.weight as f32;
                items.extend(self.tokens(&segment.text).into_iter().map(|t| windows::Item::Token(t, weight)));
            }
        }
        let ids = windows::WindowIds { bos: self.bos, eos: self.eos, pad: self.pad, comma: self.comma };
        windows::split_weighted(items, ids, opts)
    }

    /// An empty prompt's window (BOS, EOS, padding): what a shorter prompt is padded with to
    /// line up with a longer one.
    pub fn empty_window(&self) -> Vec<u32> {
        let mut w = vec![self.bos, self.eos];
        w.resize(CONTEXT_LEN, self.pad);
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded vocabulary, derived from the merges, is the tiny fixtures' vocab.json
    /// (made by transformers from OpenAI's file).
    #[test]
    fn embedded_vocabulary_equals_the_folder_vocab() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny/sd15/tokenizer");
        let text = std::fs::read_to_string(format!("{dir}/vocab.json")).unwrap();
        let folder: HashMap<String, u32> = serde_json::from_str(&text).unwrap();
        let path = Path::new("embedded");
        let derived = bpe::vocab_from_merges(&bpe::parse_merges(EMBEDDED_MERGES, path).unwrap());
        assert_eq!(derived.len(), 49408);
        assert_eq!(derived, folder);
    }
}
