//! Helpers shared by the checkpoint tests: crafted files and copies of the tiny fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::{CheckpointError, Dtype, SafetensorsFile, write};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A tiny fixture path (`fixtures/tiny/...`).
pub fn tiny(rel: &str) -> PathBuf {
    repo().join("fixtures/tiny").join(rel)
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A safetensors file from a raw header text (`header_len` overrides the real length) and
/// `data_len` bytes of data.
pub fn raw(dir: &Path, name: &str, header: &str, header_len: Option<u64>, data_len: usize) -> PathBuf {
    let mut bytes = header_len.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend((0..data_len).map(|i| i as u8));
    file(dir, name, &bytes)
}

/// Asserts that `err` is the expected variant (by `matches`) and that its message names `path`.
#[track_caller]
pub fn assert_names_file(err: &CheckpointError, path: &Path) {
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "message does not name {}: {msg}", path.display());
}

/// Every tensor of a file, as owned (name, dtype, shape, bytes).
pub fn read_all(path: &Path) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let f = SafetensorsFile::open(path).unwrap();
    f.tensors().map(|t| (t.name().to_string(), t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect()
}

/// Writes owned tensors as a safetensors file.
pub fn write_all(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let refs: Vec<(&str, Dtype, &[usize], &[u8])> =
        tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice())).collect();
    write::write_safetensors(path, &refs).unwrap();
}

/// Copies the tiny fixture `rel` (a file or folder) into `dir`, returning the copy's path.
pub fn copy_tiny(rel: &str, dir: &Path) -> PathBuf {
    let src = tiny(rel);
    let dst = dir.join(src.file_name().unwrap());
    copy_recursive(&src, &dst);
    dst
}

fn copy_recursive(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let entry = entry.unwrap();
            copy_recursive(&entry.path(), &dst.join(entry.file_name()));
        }
    } else {
        std::fs::copy(src, dst).unwrap();
    }
}

/// A sparse safetensors file of zeros with the given (name, dtype, shape) tensors.
pub fn sparse(dir: &Path, name: &str, tensors: &[(&str, Dtype, &[usize])]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    write::write_sparse_safetensors(&path, tensors).unwrap();
    path
}
