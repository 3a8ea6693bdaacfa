//! The noise ancestral and SDE samplers draw at each step, behind a trait so kiln's seeded
//! torch-compatible generator (or a test's recorded noise) can supply it.

use kiln_runtime::{DType, Device, Result, Tensor};

/// Where ancestral and SDE samplers get their noise.
pub trait NoiseSource {
    /// Standard-normal noise of `dims` (NHWC), as `dtype` on `device`.
    fn normal(&mut self, dims: &[usize], dtype: DType, device: Device) -> Result<Tensor>;

    /// Standard-normal noise of `dims` (NHWC) for an SDE step from `sigma` to `sigma_next`,
    /// taken from one Brownian path over `span` (`[sigma_min, sigma_max]` of the whole
    /// schedule) as diffusers' `BrownianTreeNoiseSampler` does: the path's increment over the
    /// step divided by `sqrt(|sigma_next - sigma|)`. A source without a path (a test replaying
    /// recorded noise) gives its next [`NoiseSource::normal`] draw, the default.
    fn brownian(
        &mut self,
        dims: &[usize],
        span: [f32; 2],
        [sigma, sigma_next]: [f32; 2],
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        let _ = (span, sigma, sigma_next);
        self.normal(dims, dtype, device)
    }
}
