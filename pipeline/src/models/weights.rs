//! Reading one component's weights out of a [`Checkpoint`] by canonical name, checked against
//! the shapes the model's configuration implies, converted to the compute dtype and uploaded.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex, PoisonError};

use kiln_runtime::checkpoint::{Checkpoint, CheckpointError, Component};
use kiln_runtime::{DType, Device, Tensor};

use super::patch::{PatchTable, PatchableWeight, WeightLayout};
use super::{ModelError, Result};

/// Tensors another loaded model lends to one being loaded, by canonical name: read through
/// [`Weights::tensor`] instead of from the file, so the same bytes are held once (the SDXL
/// refiner's text encoder 2, equal to the base's).
pub type Loans = HashMap<String, Tensor>;

/// A cursor into one component's canonical names (`unet.down_blocks.0.`...), with the dtype and
/// device every tensor read through it gets. Cheap to copy: [`Weights::at`] descends a level.
#[derive(Clone, Debug)]
pub struct Weights<'a> {
    ckpt: &'a Checkpoint,
    prefix: String,
    dtype: DType,
    device: Device,
    /// The patchable weights loaded through this cursor and every cursor descended from it.
    patchable: Arc<Mutex<PatchTable>>,
    /// Tensors lent instead of read.
    loans: Option<&'a Loans>,
}

impl<'a> Weights<'a> {
    /// The weights of `component`, read as `dtype` onto `device`.
    pub fn new(ckpt: &'a Checkpoint, component: Component, dtype: DType, device: Device) -> Self {
        let patchable = Arc::default();
        Weights { ckpt, prefix: component.prefix().to_string(), dtype, device, patchable, loans: None }
    }

    /// The same cursor taking the tensors `loans` holds (same name, shape, dtype and device)
    /// instead of reading them.
    pub fn with_loans(self, loans: Option<&'a Loans>) -> Weights<'a> {
        Weights { loans, ..self }
    }

    /// The same weights one level down: `w.at("down_blocks.0")`.
    pub fn at(&self, path: impl Display) -> Weights<'a> {
        Weights { prefix: format!("{}.{path}", self.prefix), ..self.clone() }
    }

    /// The same cursor reading as another dtype (the VAE's f32 parts, say).
    pub fn with_dtype(&self, dtype: DType) -> Weights<'a> {
        Weights { dtype, ..self.clone() }
    }

    /// The dtype tensors are read as.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device tensors are uploaded to.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The checkpoint read from.
    pub fn checkpoint(&self) -> &'a Checkpoint {
        self.ckpt
    }

    /// The full canonical name of `leaf` under this cursor.
    pub fn name(&self, leaf: &str) -> String {
        format!("{}.{leaf}", self.prefix)
    }

    /// Whether `leaf` exists under this cursor (optional tensors: biases, SDXL's extras).
    pub fn contains(&self, leaf: &str) -> bool {
        self.ckpt.contains(&self.name(leaf))
    }

    /// The stored (canonical) shape of `leaf`, or a missing-tensor error naming it.
    pub fn shape(&self, leaf: &str) -> Result<&'a [usize]> {
        let name = self.name(leaf);
        self.ckpt.shape(&name).ok_or_else(|| {
            ModelError::Checkpoint(CheckpointError::MissingTensor {
                path: self.ckpt.path().to_path_buf(),
                name,
            })
        })
    }

    /// `leaf` as a host tensor in `dtype`, after checking its shape is `expected`.
    pub fn host(&self, leaf: &str, expected: &[usize], dtype: DType) -> Result<Tensor> {
        let got = self.shape(leaf)?;
        if got != expected {
            return Err(ModelError::WeightShape {
                name: self.name(leaf),
                expected: expected.to_vec(),
                got: got.to_vec(),
            });
        }
        Ok(self.ckpt.tensor(&self.name(leaf), dtype)?)
    }

    /// Holds `tensor` (the weight loaded for `leaf`) as patchable, recorded under its canonical
    /// name for [`Weights::patchable`].
    pub fn patchable_weight(&self, leaf: &str, tensor: Tensor, layout: WeightLayout) -> PatchableWeight {
        let weight = PatchableWeight::new(tensor, layout);
        let mut table = self.patchable.lock().unwrap_or_else(PoisonError::into_inner);
        table.insert(self.name(leaf), weight.clone());
        weight
    }

    /// The patchable weights loaded so far through this cursor's family of cursors.
    pub fn patchable(&self) -> PatchTable {
        self.patchable.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `leaf`, shape-checked against `expected`, in this cursor's dtype on its device (a loan,
    /// when one fits).
    pub fn tensor(&self, leaf: &str, expected: &[usize]) -> Result<Tensor> {
        let lent = self
            .loans
            .and_then(|loans| loans.get(&self.name(leaf)))
            .filter(|t| t.dims() == expected && t.dtype() == self.dtype && t.device() == self.device);
        match lent {
            Some(tensor) if self.shape(leaf)? == expected => Ok(tensor.clone()),
            _ => Ok(self.host(leaf, expected, self.dtype)?.to_device(self.device)?),
        }
    }
}
