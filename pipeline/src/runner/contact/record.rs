//! `DIR/contact.jsonl`: what the sheet shows of each finished request, kept between runs.
//!
//! Written as the journal is (one `write_all` of a whole line, then a flush), so that a kill
//! leaves at most a partial last line, which opening cuts off.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ContactError;

/// One finished request, as the sheet shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Record {
    /// The request rendered.
    #[serde(rename = "ok")]
    Images {
        /// Its line in the requests file.
        line: usize,
        /// Its id.
        id: String,
        /// The prompt rendered (a style preset's template applied).
        prompt: String,
        /// The sampler's OctoAI name.
        sampler: String,
        /// Denoising steps.
        steps: usize,
        /// Image width in pixels.
        width: usize,
        /// Image height in pixels.
        height: usize,
        /// The response's `prediction_time_ms`.
        time_ms: f64,
        /// One thumbnail per image, in seed order.
        images: Vec<Thumb>,
    },
    /// The request has an error record.
    Error {
        /// Its line in the requests file.
        line: usize,
        /// Its id.
        id: String,
        /// The error record's details, one line.
        message: String,
    },
}

/// One image's thumbnail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thumb {
    /// The image's seed.
    pub seed: u32,
    /// The thumbnail file, relative to the output directory (`thumbs/...`).
    pub file: String,
    /// Thumbnail width in pixels.
    pub width: u32,
    /// Thumbnail height in pixels.
    pub height: u32,
}

impl Record {
    /// The request's line in the requests file.
    pub fn line(&self) -> usize {
        match self {
            Record::Images { line, .. } | Record::Error { line, .. } => *line,
        }
    }

    /// The request's id.
    pub fn id(&self) -> &str {
        match self {
            Record::Images { id, .. } | Record::Error { id, .. } => id,
        }
    }

    /// What identifies a request across runs: a later record with the same key replaces an
    /// earlier one.
    pub fn key(&self) -> (usize, &str) {
        (self.line(), self.id())
    }
}

/// The open sidecar file.
#[derive(Debug)]
pub(super) struct Sidecar {
    path: PathBuf,
    file: File,
}

impl Sidecar {
    /// Opens (or creates) the sidecar at `path`, returning it and its records (the last of each
    /// key, in file order); a trailing partial line is cut off.
    pub(super) fn open(path: &Path) -> Result<(Sidecar, Vec<Record>), ContactError> {
        let io = |source| ContactError::Io { path: path.to_owned(), source };
        let file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
        let mut reader = BufReader::new(&file);
        let mut records = Vec::new();
        let mut complete_len = 0u64;
        let mut buf = Vec::new();
        for line_no in 1.. {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break; // the end, or a partial line left by a kill
            }
            complete_len += n as u64;
            let text = &buf[..n - 1];
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record = serde_json::from_slice(text).map_err(|e| ContactError::Corrupt {
                path: path.to_owned(),
                line: line_no,
                message: e.to_string(),
            })?;
            records.push(record);
        }
        if file.metadata().map_err(io)?.len() > complete_len {
            file.set_len(complete_len).map_err(io)?;
        }
        Ok((Sidecar { path: path.to_owned(), file }, last_of_each(records)))
    }

    /// Appends one record as one line, in one write, and flushes it.
    pub(super) fn append(&mut self, record: &Record) -> Result<(), ContactError> {
        let mut line = serde_json::to_vec(record).expect("a record always serialises");
        line.push(b'\n');
        let io = |source| ContactError::Io { path: self.path.clone(), source };
        self.file.write_all(&line).map_err(io)?;
        self.file.flush().map_err(io)
    }
}

/// Keeps the last record of each key, in the order the kept ones were written.
fn last_of_each(records: Vec<Record>) -> Vec<Record> {
    let last: HashMap<(usize, &str), usize> = records.iter().enumerate().map(|(i, r)| (r.key(), i)).collect();
    let keep: Vec<bool> = records.iter().enumerate().map(|(i, r)| last[&r.key()] == i).collect();
    records.into_iter().zip(keep).filter_map(|(r, keep)| keep.then_some(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: usize, id: &str, message: &str) -> Record {
        Record::Error { line, id: id.into(), message: message.into() }
    }

    fn images(line: usize, id: &str, seed: u32) -> Record {
        Record::Images {
            line,
            id: id.into(),
            prompt: "a boat".into(),
            sampler: "DDIM".into(),
            steps: 3,
            width: 512,
            height: 768,
            time_ms: 12.5,
            images: vec![Thumb { seed, file: format!("thumbs/{id}_0.jpg"), width: 107, height: 160 }],
        }
    }

    #[test]
    fn records_survive_reopening_and_later_ones_replace_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contact.jsonl");
        let (mut sidecar, records) = Sidecar::open(&path).unwrap();
        assert!(records.is_empty());
        for record in [images(1, "a", 5), error(2, "b", "bad"), images(1, "a", 6), error(3, "a", "dup")] {
            sidecar.append(&record).unwrap();
        }
        drop(sidecar);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains(r#""status":"ok""#), "{text}");
        let (_, records) = Sidecar::open(&path).unwrap();
        assert_eq!(records, [error(2, "b", "bad"), images(1, "a", 6), error(3, "a", "dup")]);
    }

    #[test]
    fn a_partial_last_line_is_cut_off_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contact.jsonl");
        let whole = serde_json::to_string(&error(4, "x", "m")).unwrap() + "\n";
        std::fs::write(&path, format!("{whole}{{\"status\":\"ok\",\"li")).unwrap();
        let (mut sidecar, records) = Sidecar::open(&path).unwrap();
        assert_eq!(records, [error(4, "x", "m")]);
        sidecar.append(&error(5, "y", "n")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");

        std::fs::write(&path, format!("{whole}{{\"status\":\"lost\"}}\n")).unwrap();
        let err = Sidecar::open(&path).unwrap_err();
        assert!(matches!(err, ContactError::Corrupt { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("contact.jsonl:2"), "{err}");
    }
}
