//! Request image text to bytes: plain base64 or a `data:<type>;base64,` URL.
//!
//! Standard alphabet only (`+` and `/`); `=` padding optional; ASCII whitespace anywhere (line
//! breaks from `base64 -w 76`, for example) is skipped. Offsets in errors count bytes of the
//! string as given, data URL prefix included, so a person can find the bad character.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::ImageError;

/// Standard alphabet, padding optional; nonzero trailing bits are ignored, as Python's
/// `base64.b64decode` does.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The decoded bytes of `text` (plain base64 or a base64 data URL).
pub(super) fn base64_bytes(text: &str) -> Result<Vec<u8>, ImageError> {
    let (start, payload) = split_data_url(text)?;
    let symbols = base64_symbols(payload, start)?;
    if symbols.is_empty() {
        return Err(ImageError::Empty);
    }
    LENIENT.decode(&symbols).map_err(|error| {
        let (index, reason) = match error {
            base64::DecodeError::InvalidByte(index, b'=') => {
                (index, "padding '=' before the end of the data".to_string())
            }
            base64::DecodeError::InvalidByte(index, byte) => (index, format!("unexpected byte 0x{byte:02x}")),
            base64::DecodeError::InvalidLastSymbol(index, byte) => {
                (index, format!("invalid last symbol {:?}", char::from(byte)))
            }
            base64::DecodeError::InvalidLength(count) => {
                (symbols.len(), format!("the data ends mid-byte ({count} base64 symbols leave 6 stray bits)"))
            }
            base64::DecodeError::InvalidPadding => (symbols.len(), "invalid '=' padding".to_string()),
        };
        ImageError::NotBase64 { offset: original_offset(payload, index) + start, reason }
    })
}

/// `(offset of the base64 payload in text, payload)`: strips a `data:...;base64,` prefix if any.
fn split_data_url(text: &str) -> Result<(usize, &str), ImageError> {
    let leading = text.len() - text.trim_start().len();
    let rest = &text[leading..];
    let is_data_url = rest.get(..5).is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"));
    if !is_data_url {
        return Ok((0, text));
    }
    let Some(comma) = rest.find(',') else {
        return Err(ImageError::DataUrl("no ',' separates the header from the data".into()));
    };
    let header = &rest[5..comma];
    let is_base64 = header.len() >= 7 && header[header.len() - 7..].eq_ignore_ascii_case(";base64");
    if !is_base64 {
        return Err(ImageError::DataUrl(format!(
            "the header {header:?} does not end in ';base64' (only base64 data URLs are accepted)"
        )));
    }
    Ok((leading + comma + 1, &rest[comma + 1..]))
}

/// The payload's base64 symbols with whitespace removed; any other character outside the
/// alphabet is an error naming it.
fn base64_symbols(payload: &str, start: usize) -> Result<Vec<u8>, ImageError> {
    let mut symbols = Vec::with_capacity(payload.len());
    for (index, byte) in payload.bytes().enumerate() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => symbols.push(byte),
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {}
            _ => {
                let found = payload[index..].chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                let hint = match found {
                    '-' | '_' => " (URL-safe base64; use the standard alphabet with '+' and '/')",
                    _ => "",
                };
                return Err(ImageError::NotBase64 {
                    offset: start + index,
                    reason: format!("unexpected character {found:?}{hint}"),
                });
            }
        }
    }
    Ok(symbols)
}

/// The byte offset in `payload` of its `symbol_index`-th non-whitespace byte (its length when past
/// the end).
fn original_offset(payload: &str, symbol_index: usize) -> usize {
    payload
        .bytes()
        .enumerate()
        .filter(|(_, byte)| !byte.is_ascii_whitespace())
        .nth(symbol_index)
        .map_or(payload.len(), |(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_missing_padding_are_accepted() {
        assert_eq!(base64_bytes("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(base64_bytes("  aGVsbG8 \r\n").unwrap(), b"hello");
        assert_eq!(base64_bytes("data:image/png;base64,aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_bytes("DATA:image/png;BASE64,aGVsbG8=").unwrap(), b"hello");
    }

    #[test]
    fn offsets_count_the_string_as_given() {
        let error = base64_bytes("data:image/png;base64,aGV*bG8=").unwrap_err();
        assert!(matches!(error, ImageError::NotBase64 { offset: 25, .. }), "{error}");
        let error = base64_bytes("aG\n\nVs=bG8=").unwrap_err();
        assert!(matches!(error, ImageError::NotBase64 { offset: 6, .. }), "{error}");
        let error = base64_bytes("aGVsb").unwrap_err();
        assert!(matches!(error, ImageError::NotBase64 { offset: 5, .. }), "{error}");
        let error = base64_bytes("aGV-bG8").unwrap_err();
        assert!(error.to_string().contains("URL-safe"), "{error}");
    }

    #[test]
    fn malformed_data_urls_say_why() {
        assert!(matches!(base64_bytes("data:image/png;base64"), Err(ImageError::DataUrl(_))));
        assert!(matches!(base64_bytes("data:image/png,aGVsbG8="), Err(ImageError::DataUrl(_))));
        assert_eq!(base64_bytes("data:image/png;base64,"), Err(ImageError::Empty));
        assert_eq!(base64_bytes(" \n "), Err(ImageError::Empty));
    }
}
