//! One safetensors file, memory-mapped: its header parsed and validated, its tensors exposed as
//! zero-copy views into the map.
//!
//! Opening reads only the 8-byte length and the JSON header; tensor data is touched when a view's
//! bytes are read. The header is parsed by `safetensors::SafeTensors::read_metadata` (the
//! reference parser), which leaves no borrow behind: [`SafetensorsFile`] keeps the map and the
//! byte range of every tensor. When the crate rejects a file, kiln re-examines the header itself
//! to say precisely what is wrong (which tensor, which range) in a typed [`CheckpointError`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
pub use safetensors::Dtype;
use serde_json::Value;

use super::decode;
use super::error::CheckpointError;
use crate::{DType, Tensor};

use super::header_limits::{MAX_HEADER_BYTES, over_bounds};

/// A memory-mapped safetensors file.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mmap,
    /// Byte offset of the data region (8 + header length).
    data_start: usize,
    /// Tensors sorted by name.
    tensors: Vec<Entry>,
    /// The header's `__metadata__` strings.
    metadata: BTreeMap<String, String>,
}

/// A tensor's header entry, with its byte range made absolute in the file.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

/// A zero-copy view of one stored tensor: its name, stored dtype, shape and bytes in the map.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    file: &'a Path,
    name: &'a str,
    dtype: Dtype,
    shape: &'a [usize],
    data: &'a [u8],
}

impl SafetensorsFile {
    /// Maps `path` and validates its header. Reads no tensor data.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        // A FIFO or device is refused before it is opened (opening a FIFO blocks).
        crate::files::check_regular(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => not_safetensors(&path, e.to_string()),
            _ => io_error(&path, e),
        })?;
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
        if len < 8 {
            return Err(not_safetensors(
                &path,
                format!("it is {len} bytes long; a safetensors file starts with an 8-byte header length"),
            ));
        }
        // SAFETY: the map is read-only and private to this struct. Like every mmap-based loader
        // (safetensors, candle, PyTorch's mmap=True), kiln assumes no one truncates or rewrites
        // a checkpoint while it is open; doing so is undefined behaviour for the reader.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_error(&path, e))?;
        let data_start = check_preamble(&path, &map)?;
        if let Some(reason) = over_bounds(&map[8..data_start]) {
            return Err(CheckpointError::HeaderTooLarge { path, reason });
        }
        let metadata = match safetensors::SafeTensors::read_metadata(&map[..]) {
            Ok((_, metadata)) => metadata,
            Err(source) => {
                return Err(diagnose(&path, &map[8..data_start], (map.len() - data_start) as u64)
                    .unwrap_or(CheckpointError::Safetensors { path, source }));
            }
        };
        let mut tensors: Vec<Entry> = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| Entry {
                name,
                dtype: info.dtype,
                shape: info.shape.clone(),
                begin: data_start + info.data_offsets.0,
                end: data_start + info.data_offsets.1,
            })
            .collect();
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let metadata = metadata.metadata().clone().unwrap_or_default().into_iter().collect();
        Ok(SafetensorsFile { path, map, data_start, tensors, metadata })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Size of the JSON header in bytes (the data region starts 8 bytes after it).
    pub fn header_len(&self) -> usize {
        self.data_start - 8
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the file holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The header's `__metadata__` strings (often `{"format": "pt"}`).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Every tensor, in name order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = TensorView<'_>> + '_ {
        self.tensors.iter().map(|e| self.view(e))
    }

    /// The tensor stored under `name`, if any.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        let i = self.tensors.binary_search_by(|e| e.name.as_str().cmp(name)).ok()?;
        Some(self.view(&self.tensors[i]))
    }

    /// Drops this process's mapping of the pages under `data` (a view's bytes from this file),
    /// so that weights already read into their own buffers do not count twice in the resident
    /// set while a large checkpoint loads. The map is private and read-only: a later read of
    /// those bytes faults them in again, unchanged, from the page cache or the file. A no-op
    /// for slices outside the map and on platforms without `madvise`.
    pub fn release(&self, data: &[u8]) {
        let start = (data.as_ptr() as usize).wrapping_sub(self.map.as_ptr() as usize);
        if data.is_empty() || start >= self.map.len() || start + data.len() > self.map.len() {
            return;
        }
        #[cfg(unix)]
        {
            // SAFETY: the range lies inside the map (checked above). The mapping is private and
            // read-only, so none of its pages was ever written: MADV_DONTNEED only unmaps them
            // from this process, and every later read (through any live borrow) faults the same
            // bytes back in from the file. The advice is best effort; failure changes nothing.
            let _ = unsafe {
                self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, data.len())
            };
        }
    }

    fn view<'a>(&'a self, e: &'a Entry) -> TensorView<'a> {
        TensorView {
            file: &self.path,
            name: &e.name,
            dtype: e.dtype,
            shape: &e.shape,
            data: &self.map[e.begin..e.end],
        }
    }
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .field("file_len", &self.map.len())
            .finish()
    }
}

impl<'a> TensorView<'a> {
    /// The file the tensor is stored in.
    pub fn file(&self) -> &'a Path {
        self.file
    }

    /// The tensor's name in the file.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The stored element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The stored shape.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The raw little-endian bytes, borrowed from the map (no copy, no alignment guarantee).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Reads the elements into a host tensor of `dtype` with the stored shape.
    pub fn to_tensor(self, dtype: DType) -> Result<Tensor, CheckpointError> {
        self.to_tensor_as(self.shape, dtype)
    }

    /// Reads the elements into a host tensor of `dtype` under `shape` (same element count).
    pub(crate) fn to_tensor_as(self, shape: &[usize], dtype: DType) -> Result<Tensor, CheckpointError> {
        let storage = decode::decode(self.data, self.dtype, dtype).ok_or_else(|| self.unsupported())?;
        Tensor::from_cpu_storage(storage, shape).map_err(|e| self.bad_shape(e.to_string()))
    }

    /// Reads the elements as f32 values.
    pub fn to_f32_vec(self) -> Result<Vec<f32>, CheckpointError> {
        decode::decode_f32(self.data, self.dtype).ok_or_else(|| self.unsupported())
    }

    /// Rows `[index·n/of, (index+1)·n/of)` of the first dimension, still borrowed from the map.
    /// The shape is the stored one with its first dimension divided by `of`.
    pub fn rows(&self, index: usize, of: usize) -> Result<(&'a [u8], Vec<usize>), CheckpointError> {
        let n = self.shape.first().copied().unwrap_or(0);
        if of == 0 || index >= of || n % of != 0 {
            return Err(self.bad_shape(format!("cannot split its first dimension into {of} equal parts")));
        }
        let part = self.data.len() / of;
        let mut shape = self.shape.to_vec();
        shape[0] = n / of;
        Ok((&self.data[index * part..(index + 1) * part], shape))
    }

    pub(crate) fn unsupported(&self) -> CheckpointError {
        CheckpointError::UnsupportedDtype {
            path: self.file.into(),
            tensor: self.name.into(),
            dtype: self.dtype,
        }
    }

    pub(crate) fn bad_shape(&self, reason: String) -> CheckpointError {
        CheckpointError::BadShape {
            path: self.file.into(),
            tensor: self.name.into(),
            shape: self.shape.to_vec(),
            reason,
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> CheckpointError {
    if source.kind() == std::io::ErrorKind::NotFound {
        CheckpointError::NotFound { path: path.into() }
    } else {
        CheckpointError::Io { path: path.into(), source }
    }
}

fn not_safetensors(path: &Path, reason: String) -> CheckpointError {
    CheckpointError::NotSafetensors { path: path.into(), reason }
}

/// What a file that is not safetensors most likely is, from its first bytes.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"PK\x03\x04", "a zip archive (a PyTorch .ckpt/.pt/.bin pickle? kiln reads only safetensors)"),
        (b"\x80\x02", "a Python pickle (a PyTorch .ckpt/.bin? kiln reads only safetensors)"),
        (b"\x80\x04", "a Python pickle (a PyTorch .ckpt/.bin? kiln reads only safetensors)"),
        (b"GGUF", "a GGUF file"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"version https://git-lfs", "a Git LFS pointer, not the weights (run `git lfs pull`)"),
        (b"<", "an HTML or XML document (a download error page?)"),
    ];
    MAGICS.iter().find(|(m, _)| bytes.starts_with(m)).map(|&(_, what)| what)
}

/// Checks the 8-byte length and the header's first byte; returns where the data region starts.
fn check_preamble(path: &Path, map: &[u8]) -> Result<usize, CheckpointError> {
    let header_len = u64::from_le_bytes(map[..8].try_into().expect("8 bytes"));
    let available = map.len() as u64 - 8;
    // A JSON document starts with `{` (or, wrongly for safetensors, `[`), maybe after spaces.
    let looks_like_json = matches!(map.get(8), Some(b'{' | b'[' | b' ' | b'\n' | b'\r' | b'\t'));
    if let Some(what) = sniff(map).filter(|_| !looks_like_json) {
        return Err(not_safetensors(path, format!("it looks like {what}")));
    }
    if header_len > available {
        return Err(if looks_like_json {
            CheckpointError::HeaderLength { path: path.into(), header_len, available }
        } else {
            // The length is not printed: read from a file that is no safetensors, it is eight
            // bytes of that file's content, and errors never echo a rejected file's bytes.
            not_safetensors(
                path,
                format!(
                    "its first 8 bytes, read as a header length, exceed the {available} bytes that \
                     follow, and no JSON header follows them"
                ),
            )
        });
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(CheckpointError::HeaderTooLarge {
            path: path.into(),
            reason: format!("it is {header_len} bytes long, over kiln's limit of {MAX_HEADER_BYTES}"),
        });
    }
    if !looks_like_json {
        return Err(not_safetensors(path, "no JSON header follows the 8-byte length".into()));
    }
    Ok(8 + header_len as usize)
}

/// A tensor entry as the header states it, before any consistency check.
struct RawEntry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

/// Finds what is wrong with a header the safetensors crate rejected: the JSON itself, one
/// malformed entry, a byte count, or the ranges (reversed, overlapping, with holes, outside the
/// data region, or not covering it). `None` when kiln's checks find nothing to name.
fn diagnose(path: &Path, header: &[u8], data_len: u64) -> Option<CheckpointError> {
    let json = |reason: String| CheckpointError::HeaderJson { path: path.into(), reason };
    let text = match std::str::from_utf8(header) {
        Ok(t) => t,
        Err(e) => return Some(json(format!("it is not UTF-8 ({e})"))),
    };
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        Ok(other) => return Some(json(format!("it is a JSON {}, not an object", json_kind(&other)))),
        Err(e) => return Some(json(e.to_string())),
    };
    let mut entries = Vec::with_capacity(object.len());
    for (name, value) in object {
        if name == "__metadata__" {
            if let Err(reason) = parse_metadata(&value) {
                return Some(CheckpointError::HeaderEntry { path: path.into(), tensor: name, reason });
            }
            continue;
        }
        match parse_entry(&value) {
            Ok((dtype, shape, begin, end)) => entries.push(RawEntry { name, dtype, shape, begin, end }),
            Err(reason) => {
                return Some(CheckpointError::HeaderEntry { path: path.into(), tensor: name, reason });
            }
        }
    }
    if let Some(e) = check_entries(path, &entries) {
        return Some(e);
    }
    check_ranges(path, &mut entries, data_len)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn parse_metadata(v: &Value) -> Result<(), String> {
    match v {
        Value::Object(o) if o.values().all(Value::is_string) => Ok(()),
        _ => Err("`__metadata__` must be an object of strings".into()),
    }
}

fn parse_entry(v: &Value) -> Result<(Dtype, Vec<usize>, u64, u64), String> {
    let o = v.as_object().ok_or_else(|| format!("expected an object, found a {}", json_kind(v)))?;
    let dtype = match o.get("dtype") {
        Some(Value::String(s)) => serde_json::from_value::<Dtype>(Value::String(s.clone()))
            .map_err(|_| format!("unknown dtype `{s}`"))?,
        Some(other) => return Err(format!("`dtype` is a {}, not a string", json_kind(other))),
        None => return Err("no `dtype`".into()),
    };
    let ints = |key: &str| -> Result<Vec<u64>, String> {
        let arr = o.get(key).ok_or_else(|| format!("no `{key}`"))?;
        arr.as_array()
            .ok_or_else(|| format!("`{key}` is a {}, not an array", json_kind(arr)))?
            .iter()
            .map(|x| x.as_u64().ok_or_else(|| format!("`{key}` holds {x}, not a non-negative integer")))
            .collect()
    };
    let shape = ints("shape")?.into_iter().map(|d| d as usize).collect();
    let offsets = ints("data_offsets")?;
    let [begin, end] = offsets[..] else {
        return Err(format!("`data_offsets` has {} numbers, not 2", offsets.len()));
    };
    Ok((dtype, shape, begin, end))
}

/// Per-tensor checks: reversed ranges and byte counts against dtype × shape.
fn check_entries(path: &Path, entries: &[RawEntry]) -> Option<CheckpointError> {
    for e in entries {
        if e.end < e.begin {
            return Some(CheckpointError::ReversedRange {
                path: path.into(),
                tensor: e.name.clone(),
                begin: e.begin,
                end: e.end,
            });
        }
        let bits = e.shape.iter().try_fold(e.dtype.bitsize() as u128, |acc, &d| acc.checked_mul(d as u128));
        let actual = e.end - e.begin;
        if bits.is_none_or(|b| b % 8 != 0 || b / 8 != actual as u128) {
            return Some(CheckpointError::ByteCount {
                path: path.into(),
                tensor: e.name.clone(),
                dtype: e.dtype,
                shape: e.shape.clone(),
                expected: bits.map_or(u64::MAX, |b| (b / 8).min(u64::MAX as u128) as u64),
                actual,
            });
        }
    }
    None
}

/// Range checks in offset order: the tensors must tile `[0, data_len)` exactly.
fn check_ranges(path: &Path, entries: &mut [RawEntry], data_len: u64) -> Option<CheckpointError> {
    entries.sort_by(|a, b| (a.begin, a.end, &a.name).cmp(&(b.begin, b.end, &b.name)));
    let mut cursor = 0u64;
    let mut prev: Option<&RawEntry> = None;
    for e in entries.iter() {
        if e.begin > cursor && e.begin >= data_len {
            return Some(CheckpointError::OffsetsOutOfRange {
                path: path.into(),
                tensor: e.name.clone(),
                begin: e.begin,
                end: e.end,
                data_len,
            });
        }
        if e.begin > cursor {
            return Some(CheckpointError::Gap {
                path: path.into(),
                tensor: e.name.clone(),
                expected: cursor,
                begin: e.begin,
            });
        }
        if let Some(p) = prev.filter(|_| e.begin < cursor) {
            return Some(CheckpointError::Overlap {
                path: path.into(),
                first: p.name.clone(),
                first_begin: p.begin,
                first_end: p.end,
                second: e.name.clone(),
                second_begin: e.begin,
                second_end: e.end,
            });
        }
        cursor = e.end;
        prev = Some(e);
    }
    if cursor > data_len {
        let first = entries.iter().find(|e| e.end > data_len).expect("some tensor ends past the data");
        return Some(CheckpointError::Truncated {
            path: path.into(),
            tensor: first.name.clone(),
            expected: cursor,
            actual: data_len,
        });
    }
    if cursor < data_len {
        return Some(CheckpointError::TrailingData {
            path: path.into(),
            described: cursor,
            actual: data_len,
        });
    }
    None
}
