//! The noise ancestral and SDE samplers draw at each step, behind a trait so kiln's seeded
//! torch-compatible generator (or a test's recorded noise) can supply it.

use kiln_runtime::{DType, Device, Result, Tensor};

/// Where ancestral and SDE samplers get their noise.
pub trait NoiseSource {
    /// Standard-normal noise of `dims` (NHWC), as `dtype` on `device`.
    fn normal(&mut self, dims: &[usize], dtype: DType, device: Device) -> Result<Tensor>;
}
