//! Weights that can be replaced after load: every linear and convolution weight is held through
//! a [`PatchableWeight`], which the layer reads at each forward and the model's [`PatchTable`]
//! can swap, so LoRAs merge into the loaded weights without reloading the model, and the
//! originals go back by swapping the kept tensors in again (bit for bit).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use kiln_runtime::Tensor;

use super::{ModelError, Result};

/// How a patchable weight is held, relative to its checkpoint layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// A linear weight `[out, in]` (checkpoints may store it as a 1×1 conv `[out, in, 1, 1]`).
    Linear,
    /// A convolution weight held `[out, k, k, in]`; checkpoints store it OIHW `[out, in, k, k]`.
    Conv,
}

/// One weight tensor shared by its layer and the model's [`PatchTable`].
#[derive(Clone, Debug)]
pub struct PatchableWeight {
    tensor: Arc<RwLock<Tensor>>,
    layout: WeightLayout,
}

impl PatchableWeight {
    /// Holds `tensor`, laid out as `layout` says.
    pub fn new(tensor: Tensor, layout: WeightLayout) -> PatchableWeight {
        PatchableWeight { tensor: Arc::new(RwLock::new(tensor)), layout }
    }

    /// The weight in use (shares its buffer).
    pub fn get(&self) -> Tensor {
        self.tensor.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How the weight is held.
    pub fn layout(&self) -> WeightLayout {
        self.layout
    }

    /// The weight's shape in checkpoint layout: `[out, in]` for a linear, `[out, in, k, k]` for
    /// a convolution.
    pub fn checkpoint_shape(&self) -> Vec<usize> {
        let tensor = self.get();
        match (self.layout, tensor.dims()) {
            (WeightLayout::Conv, &[o, kh, kw, i]) => vec![o, i, kh, kw],
            (_, dims) => dims.to_vec(),
        }
    }

    /// Replaces the weight with `tensor`, which must have the same shape, dtype and device.
    pub fn set(&self, tensor: Tensor) -> Result<()> {
        let mut held = self.tensor.write().unwrap_or_else(PoisonError::into_inner);
        if tensor.dims() != held.dims() || tensor.dtype() != held.dtype() || tensor.device() != held.device()
        {
            return Err(ModelError::input(
                "patched weight",
                format!("{tensor:?} cannot replace {:?}: shape, dtype and device must match", *held),
            ));
        }
        *held = tensor;
        Ok(())
    }
}

/// A model's patchable weights by canonical name (`unet.conv_in.weight`).
pub type PatchTable = BTreeMap<String, PatchableWeight>;
