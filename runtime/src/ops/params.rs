//! Parameter structs for ops with more than a couple of scalar settings.

/// Stride and padding of [`crate::Tensor::conv2d`], the same along both spatial axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between kernel applications (1 or 2 in the SD models).
    pub stride: usize,
    /// Zero padding added on every side of the image.
    pub padding: usize,
}

impl Default for Conv2dParams {
    /// Stride 1, no padding.
    fn default() -> Self {
        Conv2dParams { stride: 1, padding: 0 }
    }
}

/// Settings of [`crate::Tensor::timestep_embedding`], named as in diffusers'
/// `get_timestep_embedding`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimestepEmbeddingParams {
    /// Put the cosines first (`[cos, sin]` instead of `[sin, cos]`).
    pub flip_sin_to_cos: bool,
    /// Frequencies are `max_period^(-i / (dim/2 - downscale_freq_shift))`.
    pub downscale_freq_shift: f32,
    /// The longest period of the sinusoids.
    pub max_period: u32,
}

impl Default for TimestepEmbeddingParams {
    /// The SD 1.5 and SDXL UNets' settings: `flip_sin_to_cos = true`, shift 0, period 10000.
    fn default() -> Self {
        TimestepEmbeddingParams { flip_sin_to_cos: true, downscale_freq_shift: 0.0, max_period: 10_000 }
    }
}
