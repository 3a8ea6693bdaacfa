//! One finiteness check per stage of a render (text encoder, VAE encoder, each UNet step, VAE
//! decoder): a NaN or infinity anywhere poisons everything after it, and `to_rgb8` would turn
//! it into a black image reported as a success. Each check is one pass over the stage's output
//! (a download first on a GPU), not a check per op; the first stage that fails is named.

use kiln_runtime::Tensor;

use super::{GenerateError, Result};

/// Fails with [`GenerateError::NotFinite`] naming `stage` when `tensor` holds NaN or infinity.
pub(super) fn check(tensor: &Tensor, stage: impl FnOnce() -> String) -> Result<()> {
    let count = tensor.count_non_finite()?;
    if count == 0 {
        return Ok(());
    }
    Err(GenerateError::NotFinite { stage: stage(), count, total: tensor.elem_count() })
}
