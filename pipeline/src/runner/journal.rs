//! `DIR/responses.jsonl`: the append-only record of finished requests, which is also what a rerun
//! reads to resume.
//!
//! Every record is serialised in full first and written with one `write_all` of the line and its
//! newline, then flushed, so a process killed at any moment (`kill -9` included) leaves at most one
//! partial line at the end. The runner calls [`Journal::sync`] after each group and before it
//! returns, and dropping the journal syncs it too (on a fatal error's way out), so what a run
//! reported done survives a power cut as well. Opening the journal cuts such a line off (its request runs again), and
//! collects the ids of the complete lines (those requests are skipped).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The journal's file name inside the output directory.
pub const JOURNAL_FILE: &str = "responses.jsonl";

/// Why the journal cannot be opened or appended to.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading, creating, repairing or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A complete line is not a JSON object with a string `id`: the file is not a journal kiln
    /// wrote, or was edited; kiln will not guess which requests it covers.
    #[error("{path}:{line}: {message}")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// The journal is a symlink, a folder, a FIFO or a device: kiln appends to and truncates its
    /// journal, which must be a plain file in the output directory (writing through a symlink
    /// would damage the file it points to).
    #[error("{path}: {reason}; kiln writes its journal only as a plain file in the output folder")]
    NotAFile {
        /// The journal file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// A record did not serialise to JSON.
    #[error("cannot serialise the response for id {id:?}: {source}")]
    Serialise {
        /// The record's id.
        id: String,
        /// The underlying error.
        source: serde_json::Error,
    },
}

/// The open journal: the ids it holds and the file to append to.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// For each id, whether each of its records (in file order) is an error record; an id
    /// repeated in the input has one record per occurrence.
    ids: HashMap<String, Vec<bool>>,
    records: usize,
    repaired_bytes: u64,
}

/// Only the `id` of a record; serde skips the rest (images included) without allocating them.
#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

impl Journal {
    /// Opens (or creates) `dir/responses.jsonl`, reads the ids already there and cuts off a
    /// trailing partial line. `dir` must exist.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        check_plain_file(&path)?;
        let io = |source| JournalError::Io { path: path.clone(), source };
        let file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io)?;
        let (ids, complete_len) = read_ids(&path, &file)?;
        let records = ids.values().map(Vec::len).sum();
        let total_len = file.metadata().map_err(io)?.len();
        if complete_len < total_len {
            file.set_len(complete_len).map_err(io)?;
        }
        Ok(Journal { path, file, ids, records, repaired_bytes: total_len - complete_len })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a record with this id is already in the journal.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// How many records carry this id.
    pub fn count(&self, id: &str) -> usize {
        self.ids.get(id).map_or(0, Vec::len)
    }

    /// Whether the `k`-th record (0-based, in file order) with this id is an error record
    /// (`false` when there is no such record).
    pub fn is_error(&self, id: &str, k: usize) -> bool {
        self.ids.get(id).and_then(|kinds| kinds.get(k)).copied().unwrap_or(false)
    }

    /// The number of records in the journal.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the journal holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes of a partial last line cut off when opening (0 when the file ended cleanly).
    pub fn repaired_bytes(&self) -> u64 {
        self.repaired_bytes
    }

    /// Appends one record (which must serialise with this `id` as its `id` field) as one line,
    /// in a single write, and flushes it.
    pub fn append<T: serde::Serialize + ?Sized>(&mut self, id: &str, record: &T) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record)
            .map_err(|source| JournalError::Serialise { id: id.to_owned(), source })?;
        let is_error = serde_json::from_slice::<IdOnly>(&line).is_ok_and(|r| r.error.is_some());
        line.push(b'\n');
        let io = |source| JournalError::Io { path: self.path.clone(), source };
        self.file.write_all(&line).map_err(io)?;
        self.file.flush().map_err(io)?;
        self.ids.entry(id.to_owned()).or_default().push(is_error);
        self.records += 1;
        Ok(())
    }

    /// Flushes the appended records to the disk (`fdatasync`).
    pub fn sync(&self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError::Io { path: self.path.clone(), source })
    }
}

impl Drop for Journal {
    /// Best effort: a sync that fails here has no one to report to ([`Journal::sync`] does).
    fn drop(&mut self) {
        let _ = self.file.sync_data();
    }
}

/// `Ok` when `path` is a regular file (not through a symlink) or absent.
pub(crate) fn check_plain_file(path: &Path) -> Result<(), JournalError> {
    let kind = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(JournalError::Io { path: path.to_owned(), source }),
    };
    let Some(what) = kiln_runtime::files::not_regular(kind) else { return Ok(()) };
    let reason = match std::fs::read_link(path) {
        Ok(target) => format!("it is {what} to {}", target.display()),
        Err(_) => format!("it is {what}"),
    };
    Err(JournalError::NotAFile { path: path.to_owned(), reason })
}

/// Reads the ids of the complete lines; returns them (with whether each record is an error
/// record) and the byte length of those lines (the length the file is cut to when it ends in a
/// partial line).
fn read_ids(path: &Path, file: &File) -> Result<(HashMap<String, Vec<bool>>, u64), JournalError> {
    let io = |source| JournalError::Io { path: path.to_owned(), source };
    let mut reader = BufReader::new(file);
    let mut ids: HashMap<String, Vec<bool>> = HashMap::new();
    let mut buf = Vec::new();
    let mut complete_len = 0u64;
    for line_no in 1.. {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break; // end of file, or a partial line left by a kill mid-write
        }
        complete_len += n as u64;
        let corrupt =
            |message: String| JournalError::Corrupt { path: path.to_owned(), line: line_no, message };
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: IdOnly = serde_json::from_slice(text)
            .map_err(|e| corrupt(format!("not a response record with a string \"id\": {e}")))?;
        ids.entry(record.id).or_default().push(record.error.is_some());
    }
    Ok((ids, complete_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn journal_text(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(JOURNAL_FILE)).unwrap()
    }

    #[test]
    fn appends_lines_and_reopens_with_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        assert!(journal.is_empty());
        journal.append("a", &json!({"id": "a", "images": []})).unwrap();
        journal.append("b c", &json!({"id": "b c", "error": {"detail": []}})).unwrap();
        assert!(journal.contains("a"));
        drop(journal);

        let text = journal_text(dir.path());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(text.ends_with('\n'));
        assert_eq!(serde_json::from_str::<serde_json::Value>(lines[1]).unwrap()["id"], "b c");

        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.len(), 2);
        assert!(journal.contains("a") && journal.contains("b c") && !journal.contains("c"));
        assert_eq!((journal.count("a"), journal.count("c")), (1, 0));
        assert!(!journal.is_error("a", 0) && journal.is_error("b c", 0) && !journal.is_error("b c", 1));
        assert_eq!(journal.repaired_bytes(), 0);
    }

    #[test]
    fn a_partial_last_line_is_cut_off_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let complete = "{\"id\":\"one\",\"images\":[]}\n";
        let partial = "{\"id\":\"two\",\"images\":[{\"image_b64\":\"iVBOR";
        std::fs::write(dir.path().join(JOURNAL_FILE), format!("{complete}{partial}")).unwrap();

        let mut journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.repaired_bytes(), partial.len() as u64);
        assert!(journal.contains("one"));
        assert!(!journal.contains("two"), "the partial record's request must run again");
        journal.append("two", &json!({"id": "two", "images": []})).unwrap();
        drop(journal);

        let text = journal_text(dir.path());
        assert_eq!(text, format!("{complete}{{\"id\":\"two\",\"images\":[]}}\n"));
        assert_eq!(Journal::open(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn repeated_ids_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append("x", &json!({"id": "x", "images": []})).unwrap();
        journal.append("x", &json!({"id": "x", "error": {"detail": []}})).unwrap();
        assert_eq!((journal.count("x"), journal.len()), (2, 2));
        drop(journal);
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!((journal.count("x"), journal.len()), (2, 2));
        assert!(!journal.is_error("x", 0) && journal.is_error("x", 1));
    }

    #[test]
    fn a_partial_first_line_leaves_an_empty_journal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), "{\"id\":\"x\"").unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        assert!(journal.is_empty());
        drop(journal);
        assert_eq!(journal_text(dir.path()), "");
    }

    #[test]
    fn a_complete_line_that_is_not_a_record_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"id\":\"a\"}\n\n{\"id\": 7}\n{\"id\":\"b\"}\n";
        std::fs::write(dir.path().join(JOURNAL_FILE), text).unwrap();
        match Journal::open(dir.path()) {
            Err(JournalError::Corrupt { line, path, .. }) => {
                assert_eq!(line, 3);
                assert!(path.ends_with(JOURNAL_FILE));
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        std::fs::write(dir.path().join(JOURNAL_FILE), "{\"id\":\"a\"}\nnot json\n").unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { line: 2, .. }), "{err}");
        // The corrupt file is left as it was.
        assert_eq!(journal_text(dir.path()), "{\"id\":\"a\"}\nnot json\n");
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Journal::open(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, JournalError::Io { .. }));
        assert!(err.to_string().contains(JOURNAL_FILE), "{err}");
    }

    #[test]
    fn a_journal_that_is_a_symlink_fifo_or_folder_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere.jsonl");
        std::fs::write(&elsewhere, "{\"id\": \"a\"}\npartial").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join(JOURNAL_FILE)).unwrap();
        let err = Journal::open(&out).unwrap_err();
        assert!(matches!(err, JournalError::NotAFile { .. }) && err.to_string().contains("symlink"), "{err}");
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "{\"id\": \"a\"}\npartial", "not cut");

        let fifo_dir = dir.path().join("fifo");
        std::fs::create_dir_all(&fifo_dir).unwrap();
        let status = std::process::Command::new("mkfifo").arg(fifo_dir.join(JOURNAL_FILE)).status().unwrap();
        assert!(status.success());
        let err = Journal::open(&fifo_dir).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");

        let folder_dir = dir.path().join("folder");
        std::fs::create_dir_all(folder_dir.join(JOURNAL_FILE)).unwrap();
        assert!(Journal::open(&folder_dir).unwrap_err().to_string().contains("folder"));
    }
}
