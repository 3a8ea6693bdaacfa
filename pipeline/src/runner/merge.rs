//! `kiln merge`: the journals of a sharded run ([`super::shard`]) combined into one
//! `responses.jsonl` in input order, once every input line is answered exactly once.
//!
//! Each shard's journal is scanned for its records' ids and places (no images held); the `k`-th
//! occurrence of an id in the input takes the `k`-th record of that id across the shards. An
//! input line without a record, or a record the input does not account for (an id answered twice,
//! by shards of different counts, or from another input), leaves the output unwritten and is
//! listed, so that a user knows what to rerun. Saved images are linked (or copied) into
//! `OUT/images`.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::journal::{JOURNAL_FILE, JournalError};
use super::ordered::{Span, scan};
use super::{IMAGES_DIR, replace_file};

/// What merging found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merged {
    /// `OUT/responses.jsonl` holds every input line's record, in input order.
    Written {
        /// Records written.
        records: usize,
        /// Images linked or copied into `OUT/images`.
        images: usize,
    },
    /// Nothing was written: these input lines (line, id) have no record, and these ids have
    /// records the input does not account for.
    Incomplete {
        /// Input lines without a record.
        missing: Vec<(usize, String)>,
        /// Ids with more records than input lines.
        surplus: Vec<String>,
    },
}

/// Merges the journals in `shards` into `out/responses.jsonl` in the order of `ids` (from
/// [`super::ordered::input_ids`]).
pub fn merge(out: &Path, shards: &[PathBuf], ids: &[(usize, String)]) -> Result<Merged, JournalError> {
    let mut files = Vec::with_capacity(shards.len());
    let mut by_id: HashMap<String, Vec<(usize, Span)>> = HashMap::new();
    for (s, dir) in shards.iter().enumerate() {
        let path = dir.join(JOURNAL_FILE);
        super::journal::check_plain_file(&path)?;
        let file = File::open(&path).map_err(|source| JournalError::Io { path: path.clone(), source })?;
        let (spans, _) = scan(&path, &file)?;
        for (id, list) in spans {
            by_id.entry(id).or_default().extend(list.into_iter().map(|span| (s, span)));
        }
        files.push(file);
    }
    let mut order = Vec::with_capacity(ids.len());
    let mut used: HashMap<&str, usize> = HashMap::new();
    let mut missing = Vec::new();
    for (line, id) in ids {
        let k = used.entry(id.as_str()).or_insert(0);
        match by_id.get(id.as_str()).and_then(|records| records.get(*k)) {
            Some(&record) => order.push(record),
            None => missing.push((*line, id.clone())),
        }
        *k += 1;
    }
    let mut surplus: Vec<String> = by_id
        .iter()
        .filter(|(id, records)| records.len() > used.get(id.as_str()).copied().unwrap_or(0))
        .map(|(id, _)| id.clone())
        .collect();
    if !missing.is_empty() || !surplus.is_empty() {
        surplus.sort();
        return Ok(Merged::Incomplete { missing, surplus });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| JournalError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let images = link_images(out, shards)?;
    let target = out.join(JOURNAL_FILE);
    replace_file::replace(&target, |writer| {
        let mut buf = Vec::new();
        for (s, span) in &order {
            buf.resize(span.len as usize, 0);
            files[*s].read_exact_at(&mut buf, span.offset)?;
            writer.write_all(&buf)?;
        }
        Ok(())
    })
    .map_err(io(&target))?;
    Ok(Merged::Written { records: order.len(), images })
}

/// Links (or, across file systems, copies) each shard's saved images into `out/images`.
fn link_images(out: &Path, shards: &[PathBuf]) -> Result<usize, JournalError> {
    let mut count = 0;
    for dir in shards {
        let Ok(entries) = std::fs::read_dir(dir.join(IMAGES_DIR)) else { continue };
        let target_dir = out.join(IMAGES_DIR);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { path, source }
        };
        std::fs::create_dir_all(&target_dir).map_err(io(&target_dir))?;
        for entry in entries {
            let source = entry.map_err(io(dir))?.path();
            let target = target_dir.join(source.file_name().unwrap_or_default());
            if target.exists() {
                std::fs::remove_file(&target).map_err(io(&target))?;
            }
            if std::fs::hard_link(&source, &target).is_err() {
                std::fs::copy(&source, &target).map_err(io(&target))?;
            }
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<(usize, String)> {
        list.iter().enumerate().map(|(i, id)| (i + 1, id.to_string())).collect()
    }

    fn shard(root: &Path, name: &str, records: &[(&str, &str)]) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text: String =
            records.iter().map(|(id, p)| format!("{{\"id\":\"{id}\",\"p\":\"{p}\"}}\n")).collect();
        std::fs::write(dir.join(JOURNAL_FILE), text).unwrap();
        dir
    }

    #[test]
    fn shards_merge_in_input_order_with_repeated_ids_in_occurrence_order() {
        let root = tempfile::tempdir().unwrap();
        let a = shard(root.path(), "a", &[("c", "img"), ("a", "img"), ("a", "dup")]);
        let b = shard(root.path(), "b", &[("b", "err"), ("d", "img")]);
        std::fs::create_dir_all(a.join(IMAGES_DIR)).unwrap();
        std::fs::write(a.join(IMAGES_DIR).join("c_0.png"), b"png").unwrap();
        let out = root.path().join("out");
        let merged = merge(&out, &[a, b], &ids(&["a", "b", "c", "a", "d"])).unwrap();
        assert_eq!(merged, Merged::Written { records: 5, images: 1 });
        let text = std::fs::read_to_string(out.join(JOURNAL_FILE)).unwrap();
        let order: Vec<&str> = text.lines().map(|l| &l[7..l.len() - 2]).collect();
        assert_eq!(
            order,
            [r#"a","p":"img"#, r#"b","p":"err"#, r#"c","p":"img"#, r#"a","p":"dup"#, r#"d","p":"img"#]
        );
        assert_eq!(std::fs::read(out.join(IMAGES_DIR).join("c_0.png")).unwrap(), b"png");
    }

    #[test]
    fn missing_and_surplus_records_leave_nothing_written() {
        let root = tempfile::tempdir().unwrap();
        let a = shard(root.path(), "a", &[("a", "1"), ("x", "stray")]);
        let b = shard(root.path(), "b", &[("a", "again")]);
        let out = root.path().join("out");
        let merged = merge(&out, &[a, b], &ids(&["a", "b"])).unwrap();
        assert_eq!(
            merged,
            Merged::Incomplete { missing: vec![(2, "b".into())], surplus: vec!["a".into(), "x".into()] }
        );
        assert!(!out.join(JOURNAL_FILE).exists());
        let err = merge(&out, &[root.path().join("nowhere")], &ids(&["a"])).unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}
