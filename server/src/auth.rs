//! Bearer tokens: `--token-file` holds one token per line (blank lines and `#` comments
//! skipped), and a request must send one of them as `Authorization: Bearer TOKEN`. Tokens are
//! compared in constant time, and a refusal never says which part was wrong.

use std::path::Path;

use subtle::ConstantTimeEq;

/// The accepted tokens.
#[derive(Clone)]
pub struct Tokens(Vec<Vec<u8>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} hidden)", self.0.len())
    }
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// It cannot be read.
    #[error("cannot read the token file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// It holds no token.
    #[error("the token file {path} holds no token (one per line)")]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
}

impl Tokens {
    /// Reads a token file.
    pub fn read(path: &Path) -> Result<Tokens, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.to_path_buf(), source })?;
        let tokens = Tokens::parse(&text);
        if tokens.0.is_empty() {
            return Err(TokenFileError::Empty { path: path.to_path_buf() });
        }
        Ok(tokens)
    }

    /// The tokens of a token file's text.
    pub fn parse(text: &str) -> Tokens {
        let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        Tokens(lines.map(|l| l.as_bytes().to_vec()).collect())
    }

    /// Whether an `Authorization` header value carries an accepted token. Every token is
    /// compared, each in constant time, so the time taken says nothing about which one nearly
    /// matched.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = authorization.and_then(bearer) else { return false };
        self.0.iter().fold(0u8, |found, known| found | known.as_slice().ct_eq(token).unwrap_u8()) == 1
    }
}

/// The token of `Bearer TOKEN` (the scheme is case-insensitive, as RFC 6750 allows).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listed_bearer_token_is_accepted() {
        let tokens = Tokens::parse("# kiln\n\n  alpha-123  \nbeta\n");
        assert!(tokens.accepts(Some(b"Bearer alpha-123")));
        assert!(tokens.accepts(Some(b"bearer beta")));
        for refused in [
            &b"Bearer alpha-12"[..],
            b"Bearer alpha-1234",
            b"Basic alpha-123",
            b"alpha-123",
            b"Bearer ",
            b"Bearer # kiln",
            b"",
        ] {
            assert!(!tokens.accepts(Some(refused)), "{:?}", String::from_utf8_lossy(refused));
        }
        assert!(!tokens.accepts(None));
        assert_eq!(format!("{tokens:?}"), "Tokens(2 hidden)");
    }
}
