//! Helpers shared by the text-encoder tests (text_parity, prompt_weighting): the tiny
//! checkpoints, safetensors fixtures with their cases, the relative L2 error, and the outputs
//! compared with their references ([`Compared`]; the CUDA tests bound them as
//! tests/half_tolerance explains).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_runtime::checkpoint::{Checkpoint, OpenOptions};
use kiln_runtime::{DType, Device, Tensor};
use safetensors::SafeTensors;
use serde_json::Value;

pub const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/tiny");
pub const PARITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/parity");

/// The folder, or the single file with the folder's configs.
pub fn open(model: &str, single_file: bool) -> Checkpoint {
    let dir = PathBuf::from(format!("{TINY}/{model}"));
    if single_file {
        Checkpoint::open_with(format!("{TINY}/{model}.safetensors"), &OpenOptions::default().config_dir(dir))
            .unwrap()
    } else {
        Checkpoint::open(dir).unwrap()
    }
}

/// A safetensors fixture: its cases (metadata "cases") and f32 / i32 tensors by name.
pub struct Fixture {
    pub cases: Vec<Value>,
    tensors: HashMap<String, (Vec<usize>, Vec<u8>)>,
}

impl Fixture {
    pub fn read(path: &str) -> Fixture {
        let bytes = std::fs::read(path).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let cases = serde_json::from_str(&meta.metadata().as_ref().unwrap()["cases"]).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let tensors =
            st.tensors().into_iter().map(|(k, v)| (k, (v.shape().to_vec(), v.data().to_vec()))).collect();
        Fixture { cases, tensors }
    }

    fn words(&self, name: &str) -> Option<(Vec<usize>, Vec<[u8; 4]>)> {
        let (shape, data) = self.tensors.get(name)?;
        Some((shape.clone(), data.chunks_exact(4).map(|b| b.try_into().unwrap()).collect()))
    }

    pub fn f32(&self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        self.words(name).map(|(s, w)| (s, w.into_iter().map(f32::from_le_bytes).collect()))
    }

    /// `[encoders][windows][77]` of an int32 or float32 tensor.
    pub fn nested<T>(&self, name: &str, convert: impl Fn([u8; 4]) -> T) -> Vec<Vec<Vec<T>>> {
        let (shape, words) = self.words(name).unwrap_or_else(|| panic!("fixture has no {name}"));
        let mut values = words.into_iter().map(convert);
        (0..shape[0])
            .map(|_| (0..shape[1]).map(|_| values.by_ref().take(shape[2]).collect()).collect())
            .collect()
    }

    /// `[encoders][windows][77]` token ids of an int32 tensor.
    pub fn ids(&self, name: &str) -> Vec<Vec<Vec<u32>>> {
        self.nested(name, |w| i32::from_le_bytes(w) as u32)
    }
}

/// `||got - want|| / ||want||` (the plain norm when `want` is zero).
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    if den == 0.0 { num.sqrt() } else { (num / den).sqrt() }
}

/// A tensor's values as f32 on the host.
pub fn host(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().to_device(Device::Cpu).unwrap().to_vec_f32().unwrap()
}

/// One conditioning output (host f32) next to the reference's value for it.
pub struct Compared {
    pub what: String,
    pub got: Vec<f32>,
    pub want: Vec<f32>,
}

impl Compared {
    /// `got`, which must have the reference's shape, next to the reference.
    pub fn new(what: String, got: &Tensor, (shape, want): (Vec<usize>, Vec<f32>)) -> Compared {
        assert_eq!(got.dims(), shape.as_slice(), "{what}: shape");
        Compared { what, got: host(got), want }
    }

    /// The relative L2 error against the reference.
    pub fn err(&self) -> f64 {
        rel_l2(&self.got, &self.want)
    }
}

/// Asserts every item within `tol` of its reference, printing each error.
pub fn assert_within(items: &[Compared], tol: f64) {
    for c in items {
        let err = c.err();
        eprintln!("{}: {err:.2e}", c.what);
        assert!(err <= tol, "{}: relative L2 error {err:.3e} > {tol:.0e}", c.what);
    }
}

/// The same items computed on the CPU and on CUDA (same cases, same order): both errors
/// against the reference and the difference between the two backends.
#[cfg(feature = "cuda")]
pub fn measure(cpu: &[Compared], cuda: &[Compared]) -> Vec<crate::half_tolerance::Measured> {
    assert_eq!(cpu.len(), cuda.len(), "the CPU and CUDA runs compared different items");
    cpu.iter()
        .zip(cuda)
        .map(|(c, g)| {
            assert_eq!(c.want, g.want, "{} vs {}: different references", c.what, g.what);
            crate::half_tolerance::Measured {
                what: g.what.clone(),
                cpu: c.err(),
                cuda: g.err(),
                cuda_vs_cpu: rel_l2(&g.got, &c.got),
            }
        })
        .collect()
}
