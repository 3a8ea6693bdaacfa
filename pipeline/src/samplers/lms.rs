//! `LMS`, `KLMS` (diffusers' `LMSDiscreteScheduler`, k-diffusion's `sample_lms`): a
//! fourth-order linear multistep method in sigma. Each step integrates the Lagrange
//! polynomial through the last (up to 4) slopes over the step's sigma interval; diffusers
//! integrates with scipy's `quad`, exact for these cubic polynomials, as is the 3-point
//! Gauss-Legendre rule used here.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::heun::k_derivative;
use super::schedule::{
    alphas_cumprod, discrete_timesteps, interp, karras_sigmas, sigma_to_t, training_sigmas,
};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerName, axpby};

/// Highest order (number of slopes combined).
const ORDER: usize = 4;

/// Linear multistep over an interpolated (or Karras) sigma schedule.
pub struct Lms {
    name: SamplerName,
    prediction: PredictionType,
    /// One per call; float32 values.
    timesteps: Vec<f64>,
    /// `timesteps.len() + 1` float32 values, the last 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    /// Slopes of the last (up to 4) calls, oldest first.
    derivatives: Vec<Tensor>,
    cursor: Cursor,
}

impl Lms {
    /// The schedule of `name` for `steps` steps.
    pub fn new(name: SamplerName, config: &SchedulerConfig, steps: usize) -> Self {
        let spacing = config.timestep_spacing.unwrap_or(TimestepSpacing::Linspace);
        let train = training_sigmas(&alphas_cumprod(config));
        let mut timesteps =
            discrete_timesteps(spacing, config.num_train_timesteps, steps, config.steps_offset);
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        if config.use_karras_sigmas {
            let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
            sigmas = karras_sigmas(sigmas[sigmas.len() - 1], sigmas[0], steps);
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas) as f32 as f64).collect();
        }
        sigmas.push(0.0);
        let sigmas: Vec<f64> = sigmas.into_iter().map(|s| s as f32 as f64).collect();
        let max = sigmas.iter().fold(0.0f32, |m, &s| m.max(s as f32));
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max as f64,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt() as f64,
        };
        Lms {
            name,
            prediction: config.prediction_type,
            timesteps,
            sigmas,
            init_noise_sigma,
            derivatives: Vec::new(),
            cursor: Cursor::default(),
        }
    }

    /// Integral over [sigma_i, sigma_(i+1)] of the Lagrange basis polynomial of the slope
    /// `current` steps back, among the last `order` ones.
    fn coefficient(&self, order: usize, i: usize, current: usize) -> f64 {
        let basis = |tau: f64| {
            (0..order)
                .filter(|&k| k != current)
                .map(|k| (tau - self.sigmas[i - k]) / (self.sigmas[i - current] - self.sigmas[i - k]))
                .product::<f64>()
        };
        let (a, b) = (self.sigmas[i], self.sigmas[i + 1]);
        let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
        let node = (3.0f64 / 5.0).sqrt();
        half * (5.0 / 9.0 * basis(mid - half * node)
            + 8.0 / 9.0 * basis(mid)
            + 5.0 / 9.0 * basis(mid + half * node))
    }
}

impl Sampler for Lms {
    fn name(&self) -> SamplerName {
        self.name
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps[self.cursor.begin..]
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn start_at(&mut self, begin: usize) {
        self.cursor.start_at(begin);
        self.derivatives.clear();
    }

    fn scale_model_input(&self, sample: &Tensor, call: usize) -> Result<Tensor> {
        let sigma = self.sigmas[self.cursor.index(call, self.timesteps.len())?] as f32;
        Ok(sample.affine(1.0 / (sigma * sigma + 1.0).sqrt(), 0.0)?)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        call: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let i = self.cursor.advance(call, self.timesteps.len())?;
        let derivative = k_derivative(self.prediction, sample, model_output, self.sigmas[i])?;
        if self.derivatives.len() == ORDER {
            self.derivatives.remove(0);
        }
        self.derivatives.push(derivative);
        // As diffusers: the order grows with the absolute step index, not the calls run.
        let order = (i + 1).min(ORDER);
        let mut prev = sample.clone();
        for (back, d) in self.derivatives.iter().rev().take(order).enumerate() {
            prev = axpby(&prev, 1.0, d, self.coefficient(order, i, back))?;
        }
        Ok(prev)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let sigma = self.sigmas[self.cursor.index(call, self.timesteps.len())?];
        axpby(original, 1.0, noise, sigma)
    }
}
