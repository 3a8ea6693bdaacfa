//! The requests file (or standard input): numbered non-blank lines.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the requests come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestSource {
    /// Standard input (`-` on the command line).
    Stdin,
    /// A JSONL file.
    File(PathBuf),
}

impl RequestSource {
    /// `-` is standard input; anything else a file path.
    pub fn from_arg(arg: &str) -> RequestSource {
        if arg == "-" { RequestSource::Stdin } else { RequestSource::File(arg.into()) }
    }
}

impl std::fmt::Display for RequestSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestSource::Stdin => f.write_str("standard input"),
            RequestSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The requests could not be read at all (a bad line is not this: it becomes an error record).
#[derive(Debug, thiserror::Error)]
#[error("cannot read the requests from {source_name}: {error}")]
pub struct InputError {
    /// The file, or standard input.
    pub source_name: RequestSource,
    /// The underlying error.
    #[source]
    pub error: std::io::Error,
}

/// One non-blank input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputLine {
    /// 1-based line number (blank lines count).
    pub number: usize,
    /// The line without its line ending, or the reason it is not UTF-8 text.
    pub text: Result<String, String>,
}

/// Reads every non-blank line of `source`.
pub fn read_lines(source: &RequestSource) -> Result<Vec<InputLine>, InputError> {
    let mut bytes = Vec::new();
    let read = match source {
        RequestSource::Stdin => std::io::stdin().lock().read_to_end(&mut bytes).map(drop),
        RequestSource::File(path) => read_file(path).map(|b| bytes = b),
    };
    read.map_err(|error| InputError { source_name: source.clone(), error })?;
    Ok(split_lines(&bytes))
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    if path.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    std::fs::read(path)
}

/// Splits JSONL bytes into numbered lines, dropping a UTF-8 byte-order mark, `\r\n` endings and
/// blank lines (which still count for the numbering).
pub fn split_lines(bytes: &[u8]) -> Vec<InputLine> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut lines = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|e| format!("the line is not UTF-8 text: {e}"));
        lines.push(InputLine { number: index + 1, text });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[InputLine]) -> Vec<(usize, &str)> {
        lines.iter().map(|l| (l.number, l.text.as_deref().unwrap_or("<bad>"))).collect()
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let lines = split_lines(b"{\"a\":1}\n\n   \n{\"b\":2}\r\n\t\n{\"c\":3}");
        assert_eq!(texts(&lines), [(1, "{\"a\":1}"), (4, "{\"b\":2}"), (6, "{\"c\":3}")]);
        assert!(split_lines(b"").is_empty());
        assert!(split_lines(b"\n\n").is_empty());
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let lines = split_lines(b"\xEF\xBB\xBF{\"a\":1}\n");
        assert_eq!(texts(&lines), [(1, "{\"a\":1}")]);
    }

    #[test]
    fn a_line_that_is_not_utf8_is_kept_as_that_lines_error() {
        let lines = split_lines(b"{\"a\":1}\n{\"p\":\"\xFF\xFE\"}\n{\"c\":3}\n");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1].number, 2);
        assert!(lines[1].text.as_ref().unwrap_err().contains("UTF-8"));
        assert_eq!(lines[2].text.as_deref(), Ok("{\"c\":3}"));
    }

    #[test]
    fn reads_a_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        std::fs::write(&path, "{\"prompt\":\"x\"}\n\n{\"prompt\":\"y\"}\n").unwrap();
        let lines = read_lines(&RequestSource::File(path.clone())).unwrap();
        assert_eq!(texts(&lines), [(1, "{\"prompt\":\"x\"}"), (3, "{\"prompt\":\"y\"}")]);

        let missing = dir.path().join("absent.jsonl");
        let err = read_lines(&RequestSource::File(missing)).unwrap_err();
        assert!(err.to_string().contains("absent.jsonl"), "{err}");
        let err = read_lines(&RequestSource::File(dir.path().to_owned())).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn dash_is_standard_input() {
        assert_eq!(RequestSource::from_arg("-"), RequestSource::Stdin);
        assert_eq!(RequestSource::from_arg("r.jsonl"), RequestSource::File("r.jsonl".into()));
    }
}
