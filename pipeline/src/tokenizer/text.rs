//! The text side of transformers' `CLIPTokenizer` (without ftfy): special tokens are cut out
//! first, the rest is normalized (NFC, whitespace runs to one space, lower case) and split into
//! words by CLIP's pattern before BPE.

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// A token matched as literal text rather than through BPE (`<|startoftext|>`, `<|endoftext|>`,
/// and a pad token such as tokenizer_2's `!`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SpecialToken {
    /// The text matched.
    pub content: String,
    /// Its id.
    pub id: u32,
    /// Matched in the normalized (lower-cased) text rather than the raw text.
    pub normalized: bool,
}

/// A stretch of text, or a special token found in it.
#[derive(Debug, PartialEq)]
pub(crate) enum Piece<'a> {
    Text(&'a str),
    Special(u32),
}

/// Cuts `text` at every occurrence of the specials (leftmost, longest first).
pub(crate) fn split_specials<'a>(text: &'a str, specials: &[&SpecialToken]) -> Vec<Piece<'a>> {
    let mut pieces = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < text.len() {
        let rest = &text[i..];
        let hit = specials
            .iter()
            .filter(|s| !s.content.is_empty() && rest.starts_with(s.content.as_str()))
            .max_by_key(|s| s.content.len());
        if let Some(s) = hit {
            if start < i {
                pieces.push(Piece::Text(&text[start..i]));
            }
            pieces.push(Piece::Special(s.id));
            i += s.content.len();
            start = i;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    if start < text.len() {
        pieces.push(Piece::Text(&text[start..]));
    }
    pieces
}

/// NFC, each whitespace run to one space, then lower case character by character (as the
/// `tokenizers` normalizers do: no final-sigma rule).
pub(crate) fn normalize(text: &str, whitespace: &Regex) -> String {
    let nfc: String = text.nfc().collect();
    let spaced = whitespace.replace_all(&nfc, " ");
    spaced.chars().flat_map(char::to_lowercase).collect()
}

/// The whitespace-run pattern of the normalizer.
pub(crate) fn whitespace_pattern() -> Regex {
    Regex::new(r"\s+").expect("valid pattern")
}

/// CLIP's word pattern: English contractions, letter runs, single digits, and runs of anything
/// else but whitespace. (transformers' pattern also lists the two special tokens, but they can
/// never match there; special tokens are cut out before.)
pub(crate) fn word_pattern() -> Regex {
    Regex::new(r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+").expect("valid pattern")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specials_split_leftmost_longest() {
        let eos = SpecialToken { content: "<|endoftext|>".into(), id: 7, normalized: false };
        let bang = SpecialToken { content: "!".into(), id: 0, normalized: false };
        let pieces = split_specials("a!<|endoftext|>b!", &[&eos, &bang]);
        assert_eq!(
            pieces,
            [Piece::Text("a"), Piece::Special(0), Piece::Special(7), Piece::Text("b"), Piece::Special(0)]
        );
    }

    #[test]
    fn normalize_collapses_whitespace_and_lowercases() {
        assert_eq!(normalize("E\u{301}cole  A\tB\n", &whitespace_pattern()), "\u{e9}cole a b ");
    }
}
