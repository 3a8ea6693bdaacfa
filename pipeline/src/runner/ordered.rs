//! `--ordered` and `kiln sort`: `DIR/responses.jsonl` rewritten in input order once every line of
//! the input has its record.
//!
//! The runner appends records in completion order (error records first, then groups as they
//! render, repeated ids last), which is what makes a kill safe. Sorting is a separate step over a
//! finished journal: one pass reads each record's id, offset and length (never holding the
//! images), a second copies the records in input order into a temporary file that is then
//! renamed over the journal (`replace_file`), so a reader or a crash sees the old file or
//! the sorted one. The `k`-th occurrence of an id in the input takes the `k`-th record with that
//! id, which keeps each id's records in the order a resumed run counts them. Records whose id the
//! input does not have (a journal shared by several inputs) follow, in their old order: no line
//! is ever dropped. A journal with an unanswered line is left alone.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::input::InputLine;
use super::journal::{JOURNAL_FILE, JournalError};
use super::replace_file;
use crate::request::parse_line;

/// What sorting did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sorted {
    /// The journal was rewritten in input order.
    Rewritten {
        /// Records in the journal (all kept).
        records: usize,
    },
    /// The records were already in input order; the file was not touched.
    AlreadyInOrder {
        /// Records in the journal.
        records: usize,
    },
    /// Some input lines have no record yet (a run still to finish); the file was not touched.
    Incomplete {
        /// Input lines without a record.
        missing: usize,
        /// The first of them: its line number and id.
        first: (usize, String),
    },
}

impl std::fmt::Display for Sorted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sorted::Rewritten { records } => write!(f, "rewritten in input order ({records} records)"),
            Sorted::AlreadyInOrder { records } => write!(f, "already in input order ({records} records)"),
            Sorted::Incomplete { missing, first: (line, id) } => write!(
                f,
                "left in completion order: {missing} input lines have no record yet (the first is line \
                 {line}, id {id:?}); rerun the same render command to finish"
            ),
        }
    }
}

/// The id the runner gives each line (its `id`, else its line number), with its line number.
pub fn input_ids(lines: &[InputLine]) -> Vec<(usize, String)> {
    lines
        .iter()
        .map(|line| {
            let id = match &line.text {
                Ok(text) => parse_line(text, line.number).id,
                Err(_) => line.number.to_string(),
            };
            (line.number, id)
        })
        .collect()
}

/// Where one record lies in the journal: byte offset and length (newline included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub offset: u64,
    pub len: u64,
}

/// Only the `id` of a record (serde skips the images without allocating them).
#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

/// Rewrites `dir/responses.jsonl` in the order of `ids` (from [`input_ids`]) when every input
/// line has its record (see the module documentation).
pub fn sort_journal(dir: &Path, ids: &[(usize, String)]) -> Result<Sorted, JournalError> {
    let path = dir.join(JOURNAL_FILE);
    super::journal::check_plain_file(&path)?;
    let io = |source| JournalError::Io { path: path.clone(), source };
    let file = File::open(&path).map_err(io)?;
    let (by_id, scanned_len) = scan(&path, &file)?;
    let records: usize = by_id.values().map(Vec::len).sum();

    // For each input line in order, its record; the next unused one for a repeated id.
    let mut order: Vec<Span> = Vec::with_capacity(records);
    let mut used: HashMap<&str, usize> = HashMap::new();
    let mut missing = 0;
    let mut first_missing = None;
    for (line, id) in ids {
        let k = used.entry(id.as_str()).or_insert(0);
        match by_id.get(id.as_str()).and_then(|spans| spans.get(*k)) {
            Some(span) => order.push(*span),
            None => {
                missing += 1;
                first_missing.get_or_insert_with(|| (*line, id.clone()));
            }
        }
        *k += 1;
    }
    if let Some(first) = first_missing {
        return Ok(Sorted::Incomplete { missing, first });
    }
    // Records the input does not account for keep their place after the input's, in file order.
    let mut extra: Vec<Span> = Vec::new();
    for (id, spans) in &by_id {
        let taken = used.get(id.as_str()).copied().unwrap_or(0).min(spans.len());
        extra.extend_from_slice(&spans[taken..]);
    }
    extra.sort_by_key(|span| span.offset);
    order.extend(extra);

    if order.windows(2).all(|pair| pair[0].offset < pair[1].offset) {
        return Ok(Sorted::AlreadyInOrder { records });
    }
    replace_file::replace(&path, |out| {
        let mut buf = Vec::new();
        for span in &order {
            buf.resize(span.len as usize, 0);
            file.read_exact_at(&mut buf, span.offset)?;
            out.write_all(&buf)?;
        }
        // A run appending meanwhile would lose its lines in the rename: refuse instead.
        if file.metadata()?.len() != scanned_len {
            return Err(std::io::Error::other("the journal changed while it was being sorted"));
        }
        Ok(())
    })
    .map_err(io)?;
    Ok(Sorted::Rewritten { records })
}

/// Each id's records (in file order) and the file's length. A line cut short by a kill is an
/// error: the run it belongs to is not finished.
pub(super) fn scan(path: &Path, file: &File) -> Result<(HashMap<String, Vec<Span>>, u64), JournalError> {
    let corrupt =
        |line: usize, message: String| JournalError::Corrupt { path: path.to_owned(), line, message };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut by_id: HashMap<String, Vec<Span>> = HashMap::new();
    let mut buf = Vec::new();
    let mut offset = 0u64;
    for line in 1.. {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|source| io_error(path, source))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            let message = "a partial last line (an interrupted run): rerun the render command to finish";
            return Err(corrupt(line, message.to_owned()));
        }
        let span = Span { offset, len: n as u64 };
        offset += n as u64;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: IdOnly = serde_json::from_slice(&buf)
            .map_err(|e| corrupt(line, format!("not a response record with a string \"id\": {e}")))?;
        by_id.entry(record.id).or_default().push(span);
    }
    Ok((by_id, offset))
}

fn io_error(path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io { path: PathBuf::from(path), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ids(list: &[&str]) -> Vec<(usize, String)> {
        list.iter().enumerate().map(|(i, id)| (i + 1, id.to_string())).collect()
    }

    /// A journal of `records` (id, payload) in this order.
    fn journal(dir: &Path, records: &[(&str, &str)]) -> String {
        let text: String = records
            .iter()
            .map(|(id, payload)| format!("{{\"id\":\"{id}\",\"p\":\"{payload}\"}}\n"))
            .collect();
        std::fs::write(dir.join(JOURNAL_FILE), &text).unwrap();
        text
    }

    fn read(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(JOURNAL_FILE)).unwrap()
    }

    fn sorted_lines(text: &str) -> Vec<&str> {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        lines
    }

    #[test]
    fn rewrites_in_input_order_keeping_every_line() {
        let dir = tempfile::tempdir().unwrap();
        // Completion order: errors first, then renders, the repeated id's record last.
        let before = journal(
            dir.path(),
            &[("bad", "e1"), ("c", "img"), ("a", "img"), ("b", "img"), ("a", "dup-error"), ("other", "x")],
        );
        let old = File::open(dir.path().join(JOURNAL_FILE)).unwrap();
        let old_inode = old.metadata().unwrap().ino();

        let outcome = sort_journal(dir.path(), &ids(&["a", "b", "bad", "a", "c"])).unwrap();
        assert_eq!(outcome, Sorted::Rewritten { records: 6 });
        let after = read(dir.path());
        let order: Vec<String> = after
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|r| format!("{}:{}", r["id"].as_str().unwrap(), r["p"].as_str().unwrap()))
            .collect();
        assert_eq!(order, ["a:img", "b:img", "bad:e1", "a:dup-error", "c:img", "other:x"]);
        assert_eq!(sorted_lines(&after), sorted_lines(&before), "the same lines, byte for byte");

        // Replaced by a rename: a reader of the old file still sees it whole.
        let new_inode = std::fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().ino();
        assert_ne!(old_inode, new_inode);
        let mut old_text = String::new();
        std::io::Read::read_to_string(&mut &old, &mut old_text).unwrap();
        assert_eq!(old_text, before);
        assert!(!replace_file::temp_path(&dir.path().join(JOURNAL_FILE)).exists());

        // Sorting again changes nothing.
        let outcome = sort_journal(dir.path(), &ids(&["a", "b", "bad", "a", "c"])).unwrap();
        assert_eq!(outcome, Sorted::AlreadyInOrder { records: 6 });
        assert_eq!(std::fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().ino(), new_inode);
    }

    #[test]
    fn an_unfinished_journal_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let before = journal(dir.path(), &[("c", "img"), ("a", "img")]);
        let outcome = sort_journal(dir.path(), &ids(&["a", "b", "c", "a"])).unwrap();
        assert_eq!(outcome, Sorted::Incomplete { missing: 2, first: (2, "b".into()) });
        assert_eq!(read(dir.path()), before);
        assert!(outcome.to_string().contains("line 2, id \"b\""), "{outcome}");
    }

    #[test]
    fn a_failed_rewrite_leaves_the_journal_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let before = journal(dir.path(), &[("b", "1"), ("a", "2")]);
        // The temporary file cannot be created: a folder has its name.
        std::fs::create_dir(replace_file::temp_path(&dir.path().join(JOURNAL_FILE))).unwrap();
        let err = sort_journal(dir.path(), &ids(&["a", "b"])).unwrap_err();
        assert!(matches!(err, JournalError::Io { .. }), "{err}");
        assert_eq!(read(dir.path()), before);
    }

    #[test]
    fn partial_corrupt_and_missing_journals_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = sort_journal(dir.path(), &ids(&["a"])).unwrap_err();
        assert!(err.to_string().contains(JOURNAL_FILE), "{err}");

        std::fs::write(dir.path().join(JOURNAL_FILE), "{\"id\":\"a\"}\n{\"id\":\"b\",\"ima").unwrap();
        let err = sort_journal(dir.path(), &ids(&["a", "b"])).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { line: 2, .. }), "{err}");

        std::fs::write(dir.path().join(JOURNAL_FILE), "{\"id\":\"a\"}\n\n{\"id\": 3}\n").unwrap();
        let err = sort_journal(dir.path(), &ids(&["a"])).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { line: 3, .. }), "{err}");
    }

    #[test]
    fn input_ids_are_the_runners_ids() {
        let lines = super::super::input::split_lines(
            b"{\"id\": \"x\", \"prompt\": \"p\"}\n\n{\"prompt\": \"no id\"}\nnot json\n{\"p\":\"\xFF\"}\n",
        );
        let got = input_ids(&lines);
        let want: Vec<(usize, String)> =
            [(1, "x"), (3, "3"), (4, "4"), (5, "5")].iter().map(|(n, id)| (*n, id.to_string())).collect();
        assert_eq!(got, want);
    }
}
