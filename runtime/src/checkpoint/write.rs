//! Writing safetensors files: small files from data (tests, fixtures), and full-size files whose
//! data region is a sparse hole (the header is written, then the file is extended with
//! `set_len`): a multi-GB checkpoint with real names and shapes, made instantly and using no disk.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::error::CheckpointError;
use super::file::Dtype;

/// Bytes that `dtype` × `shape` occupy (`None` on overflow or for a sub-byte remainder).
pub fn byte_len(dtype: Dtype, shape: &[usize]) -> Option<u64> {
    let bits = shape.iter().try_fold(dtype.bitsize() as u64, |acc, &d| acc.checked_mul(d as u64))?;
    (bits % 8 == 0).then_some(bits / 8)
}

/// The header (8-byte length + JSON padded with spaces to a multiple of 8, as the safetensors
/// crate writes it) for tensors laid out back to back in the given order, and the data length.
pub fn header(tensors: &[(&str, Dtype, &[usize])]) -> Option<(Vec<u8>, u64)> {
    header_with_metadata(tensors, None)
}

/// [`header`] with a `__metadata__` entry (safetensors allows string values only).
pub fn header_with_metadata(
    tensors: &[(&str, Dtype, &[usize])],
    metadata: Option<&Map<String, Value>>,
) -> Option<(Vec<u8>, u64)> {
    let mut map = Map::new();
    if let Some(metadata) = metadata {
        map.insert("__metadata__".into(), Value::Object(metadata.clone()));
    }
    let mut offset = 0u64;
    for &(name, dtype, shape) in tensors {
        let end = offset.checked_add(byte_len(dtype, shape)?)?;
        map.insert(name.into(), json!({ "dtype": dtype, "shape": shape, "data_offsets": [offset, end] }));
        offset = end;
    }
    let mut text = serde_json::to_vec(&Value::Object(map)).expect("a JSON map serialises");
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    Some((out, offset))
}

/// Writes a safetensors file holding `tensors` (name, dtype, shape, little-endian bytes).
/// Fails with [`CheckpointError::ByteCount`] when a tensor's bytes do not match its shape.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, Dtype, &[usize], &[u8])],
) -> Result<(), CheckpointError> {
    for &(name, dtype, shape, data) in tensors {
        let expected = byte_len(dtype, shape).unwrap_or(u64::MAX);
        if expected != data.len() as u64 {
            return Err(CheckpointError::ByteCount {
                path: path.into(),
                tensor: name.into(),
                dtype,
                shape: shape.to_vec(),
                expected,
                actual: data.len() as u64,
            });
        }
    }
    let specs: Vec<(&str, Dtype, &[usize])> = tensors.iter().map(|&(n, d, s, _)| (n, d, s)).collect();
    let (head, _) = header(&specs).expect("byte counts were checked");
    let io = |source| CheckpointError::Io { path: path.into(), source };
    let mut f = std::io::BufWriter::new(File::create(path).map_err(io)?);
    f.write_all(&head).map_err(io)?;
    for &(_, _, _, data) in tensors {
        f.write_all(data).map_err(io)?;
    }
    f.flush().map_err(io)
}

/// Writes a full-size safetensors file whose data region is a hole reading as zeros: only the
/// header takes disk space. Returns the file's length.
pub fn write_sparse_safetensors(
    path: &Path,
    tensors: &[(&str, Dtype, &[usize])],
) -> Result<u64, CheckpointError> {
    let Some((head, data_len)) = header(tensors) else {
        let (name, dtype, shape) =
            tensors.iter().find(|(_, d, s)| byte_len(*d, s).is_none()).copied().unwrap_or(tensors[0]);
        return Err(CheckpointError::ByteCount {
            path: path.into(),
            tensor: name.into(),
            dtype,
            shape: shape.to_vec(),
            expected: u64::MAX,
            actual: 0,
        });
    };
    let io = |source| CheckpointError::Io { path: path.into(), source };
    let mut f = File::create(path).map_err(io)?;
    f.write_all(&head).map_err(io)?;
    let len = head.len() as u64 + data_len;
    f.set_len(len).map_err(io)?;
    Ok(len)
}
