//! PTX tokens: identifiers with their dots (`mma.sync.aligned.m16n8k16`, `%tid.x`, `.reg`),
//! numbers in PTX's forms (`0f3F800000`, `0d…`, `0x…`, decimal, with a trailing `U`), strings
//! and punctuation. Comments are dropped; every token keeps its source line.

/// One token and the 1-based source line it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: Tok,
    pub line: u32,
}

/// The token kinds PTX needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A name, opcode, directive or register: letters, digits, `_ $ % . `.
    Ident(String),
    /// An integer literal, as its 64-bit pattern (negative numbers come as `-` then the number).
    Int(u64),
    /// A float literal: the bit pattern of `0f…` (f32) or `0d…` (f64), or a decimal as f64 bits.
    F32(u32),
    /// An f64 literal (`0d…` or a decimal with a point).
    F64(u64),
    /// A quoted string, without its quotes.
    Str(String),
    /// Punctuation: one of `{ } ( ) [ ] , ; : @ ! + - < > = |`.
    Punct(char),
}

/// A lexing failure: the line and what was found.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("PTX line {line}: {message}")]
pub struct LexError {
    pub line: u32,
    pub message: String,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || matches!(c, b'_' | b'$' | b'%' | b'.')
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'%' | b'.')
}

/// Splits PTX source into tokens.
pub fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    let b = src.as_bytes();
    let (mut i, mut line) = (0usize, 1u32);
    let mut out = Vec::with_capacity(src.len() / 4);
    let err = |line, message: String| LexError { line, message };
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    line += (b[i] == b'\n') as u32;
                    i += 1;
                }
                i += 2;
            }
            b'"' => {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                out.push(Token { kind: Tok::Str(src[start..i.min(b.len())].to_owned()), line });
                i += 1;
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                let text = &src[start..i];
                let kind = number(text).ok_or_else(|| err(line, format!("bad number `{text}`")))?;
                out.push(Token { kind, line });
            }
            c if is_ident_start(c) => {
                let start = i;
                // `::` belongs to the name (`.shared::cta`, `.L2::cache_hint`); one `:` ends a label.
                while i < b.len()
                    && (is_ident_char(b[i]) || (b[i] == b':' && b.get(i + 1) == Some(&b':') && i > start))
                {
                    i += if b[i] == b':' { 2 } else { 1 };
                }
                out.push(Token { kind: Tok::Ident(src[start..i].to_owned()), line });
            }
            b'{' | b'}' | b'(' | b')' | b'[' | b']' | b',' | b';' | b':' | b'@' | b'!' | b'+' | b'-'
            | b'<' | b'>' | b'=' | b'|' => {
                out.push(Token { kind: Tok::Punct(c as char), line });
                i += 1;
            }
            _ => return Err(err(line, format!("unexpected character `{}`", c as char))),
        }
    }
    Ok(out)
}

/// A numeric literal in one of PTX's spellings.
fn number(text: &str) -> Option<Tok> {
    let t = text.strip_suffix('U').unwrap_or(text);
    if let Some(hex) = t.strip_prefix("0f").or_else(|| t.strip_prefix("0F")) {
        return (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok().map(Tok::F32)).flatten();
    }
    if let Some(hex) = t.strip_prefix("0d").or_else(|| t.strip_prefix("0D")) {
        return (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok().map(Tok::F64)).flatten();
    }
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(Tok::Int);
    }
    if let Some(bin) = t.strip_prefix("0b").or_else(|| t.strip_prefix("0B")) {
        return u64::from_str_radix(bin, 2).ok().map(Tok::Int);
    }
    if t.contains(['.', 'e', 'E']) {
        return t.parse::<f64>().ok().map(|v| Tok::F64(v.to_bits()));
    }
    if t.len() > 1 && t.starts_with('0') {
        return u64::from_str_radix(&t[1..], 8).ok().map(Tok::Int);
    }
    t.parse::<u64>().ok().map(Tok::Int)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn instruction_tokens() {
        assert_eq!(
            kinds("@!%p1 add.s32 %r1, %r2, -4; // x\n"),
            vec![
                Tok::Punct('@'),
                Tok::Punct('!'),
                Tok::Ident("%p1".into()),
                Tok::Ident("add.s32".into()),
                Tok::Ident("%r1".into()),
                Tok::Punct(','),
                Tok::Ident("%r2".into()),
                Tok::Punct(','),
                Tok::Punct('-'),
                Tok::Int(4),
                Tok::Punct(';'),
            ]
        );
    }

    #[test]
    fn double_colons_belong_to_names() {
        assert_eq!(
            kinds("cp.async.ca.shared::cta.global L:"),
            vec![
                Tok::Ident("cp.async.ca.shared::cta.global".into()),
                Tok::Ident("L".into()),
                Tok::Punct(':'),
            ]
        );
    }

    #[test]
    fn literals() {
        assert_eq!(
            kinds("0f3F800000 0d3FF0000000000000 0x1F 017 12U 1.5"),
            vec![
                Tok::F32(0x3F80_0000),
                Tok::F64(0x3FF0_0000_0000_0000),
                Tok::Int(31),
                Tok::Int(15),
                Tok::Int(12),
                Tok::F64(1.5f64.to_bits()),
            ]
        );
        assert!(tokenize("0fXYZ").is_err());
    }

    #[test]
    fn lines_and_comments() {
        let t = tokenize("a /* one\n two */ b\n\"s\" c").unwrap();
        assert_eq!(t.iter().map(|t| t.line).collect::<Vec<_>>(), vec![1, 2, 3, 3]);
        assert_eq!(t[2].kind, Tok::Str("s".into()));
    }
}
