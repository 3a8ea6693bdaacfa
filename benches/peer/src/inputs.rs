//! The activations both engines are given: one fixed-seed stream, generated once per case on the
//! host in kiln's NHWC layout, and handed to candle transposed to NCHW, so the two engines see the
//! very same numbers. Also the layout conversions and the output comparison.

use kiln_runtime::random::SplitMix64;

use crate::cases::{CONTEXT_TOKENS, Case, Part, SDXL_TIME_IDS, TIMESTEP};

/// `n` unit-variance values from stream `seed`.
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| rng.unit_variance()).collect()
}

/// The inputs of one case, kiln's layouts (NHWC latents).
pub struct Inputs {
    /// `[B, h, w, 4]`, NHWC.
    pub latents: Vec<f32>,
    /// `[B, h, w, 4]`.
    pub latent_dims: [usize; 4],
    /// `[B, 77, context_dim]` (UNet only; empty for the VAE).
    pub context: Vec<f32>,
    /// `[B, 77, context_dim]`.
    pub context_dims: [usize; 3],
    /// SDXL's pooled text `[B, pooled_dim]`, and its dims (UNet with added conditioning only).
    pub pooled: Option<(Vec<f32>, [usize; 2])>,
    /// SDXL's six time ids per sample, row-major `[B, 6]`.
    pub time_ids: Vec<f32>,
    /// One timestep for the whole batch (both samples of a CFG step share it).
    pub timestep: f32,
}

impl Inputs {
    /// The inputs of `case` with latent side `latent` (the case's own unless overridden).
    pub fn new(case: &Case, latent: usize) -> Inputs {
        let b = case.batch;
        let latent_dims = [b, latent, latent, 4];
        let latents = random(latent_dims.iter().product(), 1);
        let (context, context_dims, pooled, time_ids) = match case.part {
            Part::Vae => (Vec::new(), [0; 3], None, Vec::new()),
            Part::Unet => {
                let dims = [b, CONTEXT_TOKENS, case.context_dim];
                let pooled = case.pooled_dim.map(|p| (random(b * p, 3), [b, p]));
                let ids = if pooled.is_some() { SDXL_TIME_IDS.repeat(b) } else { Vec::new() };
                (random(dims.iter().product(), 2), dims, pooled, ids)
            }
        };
        Inputs { latents, latent_dims, context, context_dims, pooled, time_ids, timestep: TIMESTEP }
    }

    /// The latents as candle takes them: `[B, 4, h, w]`, NCHW.
    pub fn latents_nchw(&self) -> (Vec<f32>, [usize; 4]) {
        let [b, h, w, c] = self.latent_dims;
        (nhwc_to_nchw(&self.latents, self.latent_dims), [b, c, h, w])
    }
}

/// `[N, H, W, C]` -> `[N, C, H, W]`.
pub fn nhwc_to_nchw(x: &[f32], [n, h, w, c]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for b in 0..n {
        for y in 0..h {
            for xx in 0..w {
                let src = ((b * h + y) * w + xx) * c;
                for ch in 0..c {
                    out[((b * c + ch) * h + y) * w + xx] = x[src + ch];
                }
            }
        }
    }
    out
}

/// `[N, C, H, W]` -> `[N, H, W, C]`.
pub fn nchw_to_nhwc(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                let src = ((b * c + ch) * h + y) * w;
                for xx in 0..w {
                    out[((b * h + y) * w + xx) * c + ch] = x[src + xx];
                }
            }
        }
    }
    out
}

/// How far two outputs of the same shape and layout are apart.
#[derive(Clone, Copy, Debug)]
pub struct Agreement {
    /// `rms(kiln - candle) / rms(candle)`.
    pub rel_rms: f64,
    /// `max |kiln - candle|`.
    pub max_abs: f64,
    /// `rms(candle)`: the scale the difference is relative to.
    pub rms: f64,
    /// Standard deviation of candle's output: well above 0 shows the output is not a constant
    /// that any two engines would agree on.
    pub std: f64,
    /// Whether either output holds a NaN or an infinity.
    pub non_finite: bool,
}

/// Compares kiln's output with candle's (both NHWC, same length).
pub fn agreement(kiln: &[f32], candle: &[f32]) -> Agreement {
    assert_eq!(kiln.len(), candle.len(), "outputs of different sizes");
    let (mut diff2, mut ref2, mut sum, mut max_abs) = (0f64, 0f64, 0f64, 0f64);
    let mut non_finite = false;
    for (&a, &b) in kiln.iter().zip(candle) {
        non_finite |= !a.is_finite() || !b.is_finite();
        let d = (a as f64 - b as f64).abs();
        diff2 += d * d;
        ref2 += b as f64 * b as f64;
        sum += b as f64;
        max_abs = max_abs.max(d);
    }
    let n = kiln.len().max(1) as f64;
    let rms = (ref2 / n).sqrt();
    let mean = sum / n;
    let std = (ref2 / n - mean * mean).max(0.0).sqrt();
    Agreement { rel_rms: (diff2 / n).sqrt() / rms, max_abs, rms, std, non_finite }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let dims = [2, 3, 5, 4]; // [N, H, W, C]
        let x: Vec<f32> = (0..dims.iter().product::<usize>()).map(|i| i as f32).collect();
        let nchw = nhwc_to_nchw(&x, dims);
        // Element (n=1, h=2, w=3, c=1) sits at ((1*3+2)*5+3)*4+1 in NHWC, ((1*4+1)*3+2)*5+3 in NCHW.
        assert_eq!(nchw[((4 + 1) * 3 + 2) * 5 + 3], x[((3 + 2) * 5 + 3) * 4 + 1]);
        assert_eq!(nchw_to_nhwc(&nchw, [2, 4, 3, 5]), x);
    }
}
