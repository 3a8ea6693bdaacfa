//! Bad safetensors files: every one gives a specific typed error naming the file, never a panic.
//! Each file is crafted byte by byte in a temporary folder.

mod checkpoint_common;

use checkpoint_common::{assert_names_file, file, raw};
use kiln_runtime::DType;
use kiln_runtime::checkpoint::{CheckpointError as E, Dtype, SafetensorsFile, write};

const ONE: &str = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

fn open_err(path: &std::path::Path) -> E {
    SafetensorsFile::open(path).expect_err("the file must be refused")
}

#[test]
fn a_well_formed_file_opens_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    for v in [1.5f32, -2.0] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    let path = dir.path().join("ok.safetensors");
    write::write_safetensors(&path, &[("a", Dtype::F32, &[2], &data)]).unwrap();
    let f = SafetensorsFile::open(&path).unwrap();
    let a = f.get("a").unwrap();
    assert_eq!((a.dtype(), a.shape()), (Dtype::F32, &[2][..]));
    assert_eq!(a.to_tensor(DType::F32).unwrap().to_vec_f32().unwrap(), [1.5, -2.0]);
    assert_eq!(a.to_tensor(DType::BF16).unwrap().to_vec_f32().unwrap(), [1.5, -2.0]);
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.safetensors");
    let e = open_err(&path);
    assert!(matches!(e, E::NotFound { .. }), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn unreadable_path() {
    // Root can read any file, so unreadability is shown with a path through a regular file.
    let dir = tempfile::tempdir().unwrap();
    let plain = file(dir.path(), "plain.txt", b"hello");
    let path = plain.join("model.safetensors");
    let e = open_err(&path);
    assert!(matches!(e, E::Io { .. }), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn a_folder_is_not_a_safetensors_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_err(dir.path());
    assert!(matches!(e, E::NotSafetensors { ref reason, .. } if reason.contains("folder")), "{e:?}");
    assert_names_file(&e, dir.path());
}

#[test]
fn empty_and_short_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [("empty.safetensors", &b""[..]), ("short.safetensors", &b"\x10\x00\x00"[..])] {
        let path = file(dir.path(), name, bytes);
        let e = open_err(&path);
        assert!(matches!(e, E::NotSafetensors { ref reason, .. } if reason.contains("bytes long")), "{e:?}");
        assert_names_file(&e, &path);
    }
}

#[test]
fn a_png_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89";
    let path = file(dir.path(), "cat.safetensors", png);
    let e = open_err(&path);
    assert!(matches!(e, E::NotSafetensors { ref reason, .. } if reason.contains("PNG")), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn a_pytorch_zip_checkpoint_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "model.ckpt", b"PK\x03\x04\x00\x00\x00\x00archive/data.pkl........");
    let e = open_err(&path);
    assert!(matches!(e, E::NotSafetensors { ref reason, .. } if reason.contains("zip")), "{e:?}");
}

#[test]
fn random_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut x = 0x2545F4914F6CDD1Du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let path = file(dir.path(), "noise.safetensors", &bytes);
    let e = open_err(&path);
    assert!(matches!(e, E::NotSafetensors { .. }), "{e:?}");
    assert_names_file(&e, &path);
}

/// Headers over kiln's bounds are refused before they are parsed: a 78 MB header listing a
/// million tensors used to peak at 972 MB in `kiln inspect`.
#[test]
fn headers_over_the_bounds_are_refused_before_parsing() {
    use kiln_runtime::checkpoint::header_limits::MAX_TENSORS;
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<String> = (0..=MAX_TENSORS)
        .map(|i| format!(r#""t{i}":{{"dtype":"F32","shape":[1],"data_offsets":[{},{}]}}"#, 4 * i, 4 * i + 4))
        .collect();
    let many = raw(
        dir.path(),
        "many.safetensors",
        &format!("{{{}}}", entries.join(",")),
        None,
        4 * (MAX_TENSORS + 1),
    );
    let e = open_err(&many);
    assert!(matches!(e, E::HeaderTooLarge { .. }) && e.to_string().contains("tensors"), "{e}");
    assert_names_file(&e, &many);

    let deep = raw(
        dir.path(),
        "deep.safetensors",
        &format!(r#"{{"a":{{"dtype":"F32","shape":[{}],"data_offsets":[0,4]}}}}"#, vec!["1"; 50].join(",")),
        None,
        4,
    );
    let e = open_err(&deep);
    assert!(matches!(e, E::HeaderTooLarge { .. }) && e.to_string().contains("dimensions"), "{e}");
}

#[test]
fn header_length_beyond_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = raw(dir.path(), "long.safetensors", ONE, Some(10_000), 8);
    let e = open_err(&path);
    assert!(matches!(e, E::HeaderLength { header_len: 10_000, .. }), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn header_over_the_length_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge_header.safetensors");
    let mut bytes = 200_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"a\":");
    std::fs::write(&path, &bytes).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(300_000_000).unwrap(); // sparse
    let e = open_err(&path);
    let limit = kiln_runtime::checkpoint::header_limits::MAX_HEADER_BYTES.to_string();
    assert!(matches!(e, E::HeaderTooLarge { ref reason, .. } if reason.contains(&limit)), "{e:?}");
}

#[test]
fn header_not_json() {
    let dir = tempfile::tempdir().unwrap();
    for (name, header) in [
        ("syntax.safetensors", r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#),
        ("array.safetensors", "[1, 2, 3]"),
        ("words.safetensors", "{this is not json}"),
    ] {
        let path = raw(dir.path(), name, header, None, 8);
        let e = open_err(&path);
        assert!(matches!(e, E::HeaderJson { .. }), "{name}: {e:?}");
        assert_names_file(&e, &path);
    }
    let mut header = br#"{"a"#.to_vec();
    header.extend_from_slice(b"\xff\xfe\":{}}");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    let path = file(dir.path(), "latin1.safetensors", &bytes);
    let e = open_err(&path);
    assert!(matches!(e, E::HeaderJson { ref reason, .. } if reason.contains("UTF-8")), "{e:?}");
}

#[test]
fn malformed_entries() {
    let dir = tempfile::tempdir().unwrap();
    for (name, header, what) in [
        (
            "dtype.safetensors",
            r#"{"w":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}"#,
            "unknown dtype `F17`",
        ),
        ("noshape.safetensors", r#"{"w":{"dtype":"F32","data_offsets":[0,8]}}"#, "no `shape`"),
        (
            "negative.safetensors",
            r#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
            "not a non-negative integer",
        ),
        ("offsets.safetensors", r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}"#, "not 2"),
        (
            "meta.safetensors",
            r#"{"__metadata__":{"n":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            "__metadata__",
        ),
    ] {
        let path = raw(dir.path(), name, header, None, 8);
        let e = open_err(&path);
        assert!(matches!(e, E::HeaderEntry { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains(what), "{name}: {e}");
        assert_names_file(&e, &path);
    }
}

#[test]
fn truncated_data() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[4],"data_offsets":[8,16]}}"#;
    let path = raw(dir.path(), "cut.safetensors", header, None, 11);
    let e = open_err(&path);
    assert!(matches!(e, E::Truncated { expected: 16, actual: 11, ref tensor, .. } if tensor == "b"), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn trailing_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = raw(dir.path(), "extra.safetensors", ONE, None, 12);
    let e = open_err(&path);
    assert!(matches!(e, E::TrailingData { described: 8, actual: 12, .. }), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn offsets_outside_the_data_region() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[1000,1008]}}"#;
    let path = raw(dir.path(), "far.safetensors", header, None, 8);
    let e = open_err(&path);
    assert!(matches!(e, E::OffsetsOutOfRange { begin: 1000, data_len: 8, .. }), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn overlapping_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let path = raw(dir.path(), "overlap.safetensors", header, None, 12);
    let e = open_err(&path);
    assert!(matches!(e, E::Overlap { ref first, ref second, .. } if first == "a" && second == "b"), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn reversed_range() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#;
    let path = raw(dir.path(), "reversed.safetensors", header, None, 8);
    let e = open_err(&path);
    assert!(matches!(e, E::ReversedRange { begin: 8, end: 0, .. }), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn hole_between_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#;
    let path = raw(dir.path(), "gap.safetensors", header, None, 20);
    let e = open_err(&path);
    assert!(matches!(e, E::Gap { expected: 8, begin: 12, ref tensor, .. } if tensor == "b"), "{e:?}");
    assert_names_file(&e, &path);
}

#[test]
fn byte_count_that_does_not_match_dtype_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    let path = raw(dir.path(), "count.safetensors", header, None, 8);
    let e = open_err(&path);
    assert!(matches!(e, E::ByteCount { expected: 12, actual: 8, .. }), "{e:?}");
    assert_names_file(&e, &path);
    let header = r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#;
    let path = raw(dir.path(), "overflow.safetensors", header, None, 8);
    assert!(matches!(open_err(&path), E::ByteCount { .. }));
}

#[test]
fn unsupported_dtype_when_converting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fp8.safetensors");
    write::write_safetensors(&path, &[("w", Dtype::F8_E4M3, &[4], &[0x38, 0x40, 0, 0xb8])]).unwrap();
    let f = SafetensorsFile::open(&path).unwrap();
    let e = f.get("w").unwrap().to_tensor(DType::F32).unwrap_err();
    assert!(
        matches!(e, E::UnsupportedDtype { dtype: Dtype::F8_E4M3, ref tensor, .. } if tensor == "w"),
        "{e:?}"
    );
    assert_names_file(&e, &path);
}

#[test]
fn every_float_and_integer_dtype_converts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dtypes.safetensors");
    let f64s: Vec<u8> = [0.5f64, -3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let i64s: Vec<u8> = [7i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16s: Vec<u8> =
        [half::f16::from_f32(0.5), half::f16::from_f32(-3.0)].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bf16s: Vec<u8> = [half::bf16::from_f32(0.5), half::bf16::from_f32(-3.0)]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write::write_safetensors(
        &path,
        &[
            ("f64", Dtype::F64, &[2], &f64s),
            ("i64", Dtype::I64, &[2], &i64s),
            ("f16", Dtype::F16, &[2], &f16s),
            ("bf16", Dtype::BF16, &[2], &bf16s),
            ("u8", Dtype::U8, &[2], &[200, 1]),
        ],
    )
    .unwrap();
    let f = SafetensorsFile::open(&path).unwrap();
    let read = |n: &str, d: DType| f.get(n).unwrap().to_tensor(d).unwrap().to_vec_f32().unwrap();
    for d in [DType::F32, DType::F16, DType::BF16] {
        assert_eq!(read("f64", d), [0.5, -3.0]);
        assert_eq!(read("f16", d), [0.5, -3.0]);
        assert_eq!(read("bf16", d), [0.5, -3.0]);
    }
    assert_eq!(read("i64", DType::F32), [7.0, -1.0]);
    assert_eq!(read("u8", DType::F32), [200.0, 1.0]);
}

#[test]
fn an_odd_header_length_leaves_the_data_unaligned_and_it_still_reads() {
    // Header of 57 bytes: the data region starts at byte 65, so f32s are not 4-byte aligned.
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   "#;
    assert_eq!((8 + header.len()) % 4, 1);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1.25f32.to_le_bytes());
    bytes.extend_from_slice(&(-7.5f32).to_le_bytes());
    let path = file(dir.path(), "odd.safetensors", &bytes);
    let f = SafetensorsFile::open(&path).unwrap();
    assert_eq!(f.get("a").unwrap().to_f32_vec().unwrap(), [1.25, -7.5]);
}
