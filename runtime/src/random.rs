//! SplitMix64: a tiny fixed-seed generator for random weights and bench inputs (not the
//! samplers' noise, which matches torch's generator: `kiln_pipeline::rng`).

/// SplitMix64 (Steele, Lea and Flood): one 64-bit state, good enough for test data.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform on [-√3, √3): unit variance, as latents and text states roughly are.
    pub fn unit_variance(&mut self) -> f32 {
        self.uniform() * 3f32.sqrt()
    }
}
