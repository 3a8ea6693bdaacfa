//! The attention parser. It reads the prompt as A1111's tokenizing regular expression does
//! (escapes, brackets, `:number)`, colons and runs of other text, first match wins), keeps a
//! stack of open round and square brackets, and multiplies the weights of everything emitted
//! since a bracket opened when it closes. Brackets still open at the end are closed there
//! (round ones first, then square ones, each in opening order); unmatched closing brackets are
//! plain text. Character classes follow Python's `re` on `str`: `\d` is any decimal digit,
//! `\s` and `\w` are Unicode-aware.

use std::sync::LazyLock;

use regex::Regex;

/// The factor of `(...)`.
const ROUND: f64 = 1.1;
/// The factor of `[...]`.
const SQUARE: f64 = 1.0 / 1.1;
/// The text and weight A1111 marks a `BREAK` with.
const BREAK_TEXT: &str = "BREAK";
const BREAK_WEIGHT: f64 = -1.0;

/// A prompt that cannot be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptError {
    /// `(text:w)` where `w` is not a finite number (A1111 raises on `(a:1.2.3)`).
    #[error("prompt weight {weight:?} in \"(...:{weight})\" is not a finite number")]
    Weight {
        /// The characters after the colon.
        weight: String,
    },
    /// The brackets around `text` multiply its weight beyond f32's range, the dtype weights
    /// are applied in (`(a:` and 40 digits `)`, or nesting whose product overflows): the
    /// encoder's output would be infinite. A1111 would scale by infinity.
    #[error(
        "prompt weights multiply to {weight:e} for {text:?}, beyond the range of f32 (about 3.4e38), \
         in which they are applied"
    )]
    Overflow {
        /// The start of the text so weighted.
        text: String,
        /// The product, as computed (f64).
        weight: f64,
    },
}

/// How much of an overflowing segment's text [`PromptError::Overflow`] quotes.
const QUOTED_CHARS: usize = 40;

/// A piece of the prompt with the weight of its tokens. `BREAK` is a segment of its own with
/// text `BREAK` and weight -1 (A1111's marker; see [`Segment::is_break`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// The text, escapes resolved, brackets removed.
    pub text: String,
    /// The product of the enclosing brackets' factors.
    pub weight: f64,
}

impl Segment {
    /// Whether this is the `BREAK` marker. Like A1111, a `BREAK` whose weight an enclosing
    /// bracket changed is ordinary text.
    pub fn is_break(&self) -> bool {
        self.text == BREAK_TEXT && self.weight == BREAK_WEIGHT
    }
}

/// One match of A1111's `re_attention`.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    /// `\(`, `\)`, `\[`, `\]`, `\\`: the character; a lone `\`: nothing.
    Escaped(&'a str),
    OpenRound,
    OpenSquare,
    /// `:number)`, with the number's characters.
    Weight(&'a str),
    CloseRound,
    CloseSquare,
    /// A run of other characters, or a lone `:`.
    Text(&'a str),
}

/// The prompt as weighted segments, adjacent equal weights merged; `[("", 1.0)]` for an empty
/// prompt. A weight that is not a number is an error, as it is in A1111.
pub fn parse_attention(prompt: &str) -> Result<Vec<Segment>, PromptError> {
    let mut out: Vec<Segment> = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();
    // Each product is checked as the f32 it is applied as (the tokenizer casts the weights).
    let scale = |out: &mut Vec<Segment>, from: usize, factor: f64| {
        for s in &mut out[from..] {
            s.weight *= factor;
            if !(s.weight as f32).is_finite() {
                let text = s.text.chars().take(QUOTED_CHARS).collect();
                return Err(PromptError::Overflow { text, weight: s.weight });
            }
        }
        Ok(())
    };
    let mut rest = prompt;
    while !rest.is_empty() {
        let (token, len) = next_token(rest);
        let matched = &rest[..len];
        rest = &rest[len..];
        match token {
            Token::Escaped(text) => out.push(Segment { text: text.into(), weight: 1.0 }),
            Token::OpenRound => round.push(out.len()),
            Token::OpenSquare => square.push(out.len()),
            Token::Weight(number) if !round.is_empty() => {
                let factor = python_float(number)
                    .filter(|w| w.is_finite())
                    .ok_or_else(|| PromptError::Weight { weight: number.into() })?;
                let from = round.pop().unwrap_or_default();
                scale(&mut out, from, factor)?;
            }
            Token::CloseRound if !round.is_empty() => {
                let from = round.pop().unwrap_or_default();
                scale(&mut out, from, ROUND)?;
            }
            Token::CloseSquare if !square.is_empty() => {
                let from = square.pop().unwrap_or_default();
                scale(&mut out, from, SQUARE)?;
            }
            _ => push_plain(&mut out, matched),
        }
    }
    for from in round {
        scale(&mut out, from, ROUND)?;
    }
    for from in square {
        scale(&mut out, from, SQUARE)?;
    }
    if out.is_empty() {
        out.push(Segment { text: String::new(), weight: 1.0 });
    }
    let mut merged: Vec<Segment> = Vec::with_capacity(out.len());
    for s in out {
        match merged.last_mut() {
            Some(last) if last.weight == s.weight => last.text.push_str(&s.text),
            _ => merged.push(s),
        }
    }
    Ok(merged)
}

/// The first alternative of `re_attention` matching at the start of `rest` (not empty), and
/// its length in bytes.
fn next_token(rest: &str) -> (Token<'_>, usize) {
    let mut chars = rest.chars();
    let first = chars.next().unwrap_or('\0');
    match first {
        '\\' => match chars.next() {
            Some(c @ ('(' | ')' | '[' | ']' | '\\')) => (Token::Escaped(&rest[1..2]), 1 + c.len_utf8()),
            _ => (Token::Escaped(""), 1),
        },
        '(' => (Token::OpenRound, 1),
        '[' => (Token::OpenSquare, 1),
        ')' => (Token::CloseRound, 1),
        ']' => (Token::CloseSquare, 1),
        ':' => match weight_len(&rest[1..]) {
            Some(n) => (Token::Weight(&rest[1..1 + n]), n + 2),
            None => (Token::Text(":"), 1),
        },
        _ => {
            let len = rest.find(['\\', '(', ')', '[', ']', ':']).unwrap_or(rest.len());
            (Token::Text(&rest[..len]), len)
        }
    }
}

/// `[+-]?[.\d]+` followed by `)` at the start of `s`: the number's length in bytes.
fn weight_len(s: &str) -> Option<usize> {
    let sign = usize::from(s.starts_with(['+', '-']));
    let body = s[sign..].char_indices().find(|&(_, c)| !(c == '.' || is_decimal(c))).map(|(i, _)| i);
    let body = body.unwrap_or(s.len() - sign);
    (body > 0 && s[sign + body..].starts_with(')')).then_some(sign + body)
}

/// Python's `float()` on a `[+-]?[.\d]+` string: any script's decimal digits count.
fn python_float(number: &str) -> Option<f64> {
    let ascii: String = number
        .chars()
        .map(|c| if c.is_ascii() { Some(c) } else { decimal_value(c).and_then(|d| char::from_digit(d, 10)) })
        .collect::<Option<String>>()?;
    ascii.parse().ok()
}

static DECIMAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\p{Nd}$").expect("valid pattern"));
static WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[\p{L}\p{N}_]$").expect("valid pattern"));

/// Python's `\d` on `str`: a Unicode decimal digit (category Nd).
fn is_decimal(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && DECIMAL.is_match(c.encode_utf8(&mut [0; 4])))
}

/// The value of a decimal digit. Unicode keeps each script's digits 0-9 contiguous and in
/// order, so the value is the count of digits just below it, modulo 10.
fn decimal_value(c: char) -> Option<u32> {
    if !is_decimal(c) {
        return None;
    }
    let below = (0..u32::from(c)).rev().take_while(|&p| char::from_u32(p).is_some_and(is_decimal)).count();
    Some(below as u32 % 10)
}

/// Python's `\w` on `str`: letters, numbers (`isalnum`) and `_`.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || (!c.is_ascii() && WORD.is_match(c.encode_utf8(&mut [0; 4])))
}

/// Python's `\s` on `str`: Unicode white space and the separators U+001C..U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Appends plain text with weight 1, split at each `\s*\bBREAK\b\s*` with a marker between
/// the parts (A1111's `re.split(re_break, text)`; empty parts are kept).
fn push_plain(out: &mut Vec<Segment>, text: &str) {
    let mut part_start = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find(BREAK_TEXT) {
        let at = search + found;
        let end = at + BREAK_TEXT.len();
        let before_ok = !text[..at].chars().next_back().is_some_and(is_word);
        let after_ok = !text[end..].chars().next().is_some_and(is_word);
        if !(before_ok && after_ok) {
            search = at + 1;
            continue;
        }
        let lead: usize =
            text[part_start..at].chars().rev().take_while(|&c| is_space(c)).map(char::len_utf8).sum();
        let trail: usize = text[end..].chars().take_while(|&c| is_space(c)).map(char::len_utf8).sum();
        out.push(Segment { text: text[part_start..at - lead].into(), weight: 1.0 });
        out.push(Segment { text: BREAK_TEXT.into(), weight: BREAK_WEIGHT });
        part_start = end + trail;
        search = part_start;
    }
    out.push(Segment { text: text[part_start..].into(), weight: 1.0 });
}

/// The parser's results are checked against A1111's in tests/prompt_weighting.rs; these pin the
/// lexer's alternatives.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_the_first_matching_alternative() {
        assert_eq!(next_token(r"\(x"), (Token::Escaped("("), 2));
        assert_eq!(next_token(r"\\x"), (Token::Escaped("\\"), 2));
        assert_eq!(next_token(r"\x"), (Token::Escaped(""), 1));
        assert_eq!(next_token(":1.5)"), (Token::Weight("1.5"), 5));
        assert_eq!(next_token(":-.5)a"), (Token::Weight("-.5"), 5));
        assert_eq!(next_token(":+)"), (Token::Text(":"), 1));
        assert_eq!(next_token(":1.5 )"), (Token::Text(":"), 1));
        assert_eq!(next_token("ab c:d"), (Token::Text("ab c"), 4));
    }

    #[test]
    fn bad_weight_is_an_error() {
        assert_eq!(parse_attention("(a:1.2.3)"), Err(PromptError::Weight { weight: "1.2.3".into() }));
        // Without an open round bracket it is text.
        assert!(parse_attention("a:1.2.3) b").is_ok());
    }
}
