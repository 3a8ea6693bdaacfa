//! Writing safetensors files: small files from data (tests, fixtures), and full-size files whose
//! data region is a sparse hole (the header is written, then the file is extended with
//! `set_len`): a multi-GB checkpoint with real names and shapes, made instantly and using no disk.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::random::SplitMix64;

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

/// Writes a full-size safetensors file in which the tensors marked `true` hold fixed-seed random
/// values (matrices uniform with variance 1/fan-in, norm scales `1 ± 0.1`, biases `± 0.1`) and the others read as zeros from a sparse hole. Values depend
/// on `seed`, the tensor's stored name and its shape only. Only float tensors can be random. Returns the
/// file's length.
pub fn write_random_safetensors(
    path: &Path,
    tensors: &[(&str, Dtype, &[usize], bool)],
    seed: u64,
) -> Result<u64, CheckpointError> {
    use rayon::prelude::*;
    use std::io::{Seek, SeekFrom};

    let specs: Vec<(&str, Dtype, &[usize])> = tensors.iter().map(|&(n, d, s, _)| (n, d, s)).collect();
    let len = write_sparse_safetensors(path, &specs)?;
    let (head, _) = header(&specs).expect("write_sparse_safetensors checked the sizes");
    let io = |source| CheckpointError::Io { path: path.into(), source };
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
    let mut offset = head.len() as u64;
    for &(name, dtype, shape, random) in tensors {
        let bytes = byte_len(dtype, shape).expect("checked above");
        if random {
            let width = match dtype {
                Dtype::F32 => 4,
                Dtype::F16 | Dtype::BF16 => 2,
                other => {
                    return Err(CheckpointError::Config {
                        path: path.into(),
                        reason: format!("tensor `{name}` is {other:?}: only float tensors can be random"),
                    });
                }
            };
            let stream = seed ^ fnv1a(name.as_bytes());
            let mut data = vec![0u8; bytes as usize];
            // Chunks of 64 Ki elements, each with its own stream: parallel and deterministic.
            data.par_chunks_mut(width << 16).enumerate().for_each(|(chunk, out)| {
                let mut rng = SplitMix64::new(stream ^ (chunk as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
                for dst in out.chunks_exact_mut(width) {
                    let v = random_value(name, shape, &mut rng);
                    match dtype {
                        Dtype::F32 => dst.copy_from_slice(&v.to_le_bytes()),
                        Dtype::F16 => dst.copy_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                        _ => dst.copy_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                    }
                }
            });
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
            f.write_all(&data).map_err(io)?;
        }
        offset += bytes;
    }
    f.flush().map_err(io)?;
    Ok(len)
}

/// A random weight that keeps activations at a sane scale through a deep network: matrices and
/// convolutions uniform with variance 1/fan-in, norm scales `1 ± 0.1`, biases `± 0.1`.
fn random_value(name: &str, shape: &[usize], rng: &mut SplitMix64) -> f32 {
    let u = rng.uniform();
    if shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product();
        u * (3.0 / fan_in.max(1) as f32).sqrt()
    } else if name.ends_with(".weight") || name.ends_with(".gamma") || name.ends_with(".scale") {
        1.0 + 0.1 * u
    } else {
        0.1 * u
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
