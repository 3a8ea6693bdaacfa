//! Weights that are not finite (issue 13, item 2): reading one through [`Checkpoint::tensor`]
//! is a [`CheckpointError::NotFinite`] naming the file, the stored and the canonical tensor name,
//! whether the value is NaN as stored or overflows the dtype it is read as; the check can be
//! skipped with [`OpenOptions::skip_weight_check`].

mod checkpoint_common;

use checkpoint_common::{read_all, tiny, write_all};
use kiln_runtime::DType;
use kiln_runtime::checkpoint::{Checkpoint, CheckpointError, Dtype, OpenOptions};

const STORED: &str = "model.diffusion_model.input_blocks.0.0.weight";
const CANONICAL: &str = "unet.conv_in.weight";

/// The tiny SD 1.5 single file with `STORED` rewritten by `edit` (which gets its f32 values and
/// may change them) and stored as `dtype`.
fn edited(dir: &std::path::Path, dtype: Dtype, edit: impl Fn(&mut [f32])) -> std::path::PathBuf {
    let mut tensors = read_all(&tiny("sd15.safetensors"));
    let (_, stored_dtype, _, data) = tensors.iter_mut().find(|t| t.0 == STORED).expect("fixture tensor");
    let mut values: Vec<f32> = match stored_dtype {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => panic!("the fixture stores {other:?}"),
    };
    edit(&mut values);
    *data = match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
    };
    *stored_dtype = dtype;
    let path = dir.join("sd15.safetensors");
    write_all(&path, &tensors);
    path
}

fn not_finite(path: &std::path::Path, dtype: DType) -> CheckpointError {
    let ckpt = Checkpoint::open(path).unwrap();
    ckpt.tensor(CANONICAL, dtype).expect_err("a non-finite weight must not load")
}

#[test]
fn a_nan_weight_is_named_with_its_file_and_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), Dtype::F16, |v| v[v.len() / 3] = f32::NAN);
    let e = not_finite(&path, DType::F32);
    assert!(matches!(e, CheckpointError::NotFinite { count: 1, .. }), "{e:?}");
    let msg = e.to_string();
    for part in [path.display().to_string().as_str(), STORED, CANONICAL] {
        assert!(msg.contains(part), "{part} not in: {msg}");
    }
    // Skipped on request: the value is read as it is.
    let ckpt = Checkpoint::open_with(&path, &OpenOptions::default().skip_weight_check(true)).unwrap();
    assert_eq!(ckpt.tensor(CANONICAL, DType::F32).unwrap().count_non_finite().unwrap(), 1);
    // Other tensors of the file still load.
    assert!(ckpt.tensor("unet.conv_in.bias", DType::F32).is_ok());
}

#[test]
fn a_weight_beyond_the_compute_dtype_is_refused_in_that_dtype() {
    let dir = tempfile::tempdir().unwrap();
    // 1e5 is a fine f32 but beyond f16's 65504.
    let path = edited(dir.path(), Dtype::F32, |v| v[0] = 1e5);
    let ckpt = Checkpoint::open(&path).unwrap();
    assert!(ckpt.tensor(CANONICAL, DType::F32).is_ok());
    let e = not_finite(&path, DType::F16);
    assert!(e.to_string().contains("read as f16"), "{e}");
}
