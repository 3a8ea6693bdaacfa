//! `HEUN`, `K_HEUN` (diffusers' `HeunDiscreteScheduler`): Heun's second-order method in sigma
//! (Karras et al. 2022, Algorithm 1 without churn). Each step calls the model twice: at the
//! step's sigma (an Euler step to the next sigma), then at the next sigma, averaging the two
//! slopes. The last step, to sigma 0, is a plain Euler step, so `steps` steps make
//! `2 * steps - 1` model calls.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::schedule::{
    alphas_cumprod, discrete_timesteps, interp, karras_sigmas, sigma_to_t, training_sigmas,
};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerError, SamplerName, axpby};

/// The first half of a Heun step, kept for the second call.
struct FirstHalf {
    /// Latents the step started from.
    sample: Tensor,
    /// Slope dx/dsigma at the step's sigma.
    derivative: Tensor,
    /// Next sigma minus the step's sigma.
    dt: f64,
}

/// Heun's method over an interpolated (or Karras) sigma schedule.
pub struct Heun {
    name: SamplerName,
    prediction: PredictionType,
    /// One per call: `[t0, t1, t1, ..., t(n-1), t(n-1)]`, float32 values.
    timesteps: Vec<f64>,
    /// Per call index: `[s0, s1, s1, ..., s(n-1), s(n-1), 0]`, float32 values.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    first_half: Option<FirstHalf>,
    cursor: Cursor,
}

/// dx/dsigma = (x - x0) / sigma for the model's prediction at `sigma`.
pub(super) fn k_derivative(
    prediction: PredictionType,
    sample: &Tensor,
    model_output: &Tensor,
    sigma: f64,
) -> Result<Tensor> {
    match prediction {
        PredictionType::Epsilon => Ok(model_output.clone()),
        // x0 = -sigma / sqrt(sigma^2 + 1) * v + x / (sigma^2 + 1).
        PredictionType::VPrediction => {
            let s2 = sigma * sigma + 1.0;
            axpby(sample, sigma / s2, model_output, 1.0 / s2.sqrt())
        }
    }
}

impl Heun {
    /// The schedule of `name` for `steps` steps.
    pub fn new(name: SamplerName, config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if config.clip_sample == Some(true) {
            return Err(SamplerError::config("clip_sample", "sample clipping is not supported"));
        }
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
        // Interleave: the first entry once, every other one twice (the final zero once).
        let mut per_call_sigmas = vec![sigmas[0]];
        for &s in &sigmas[1..steps] {
            per_call_sigmas.extend([s, s]);
        }
        per_call_sigmas.push(0.0);
        let mut per_call_timesteps = vec![timesteps[0]];
        for &t in &timesteps[1..] {
            per_call_timesteps.extend([t, t]);
        }
        let max = per_call_sigmas.iter().fold(0.0f32, |m, &s| m.max(s as f32));
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max as f64,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt() as f64,
        };
        Ok(Heun {
            name,
            prediction: config.prediction_type,
            timesteps: per_call_timesteps,
            sigmas: per_call_sigmas,
            init_noise_sigma,
            first_half: None,
            cursor: Cursor::default(),
        })
    }
}

impl Sampler for Heun {
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
        self.first_half = None;
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
        match self.first_half.take() {
            None => {
                let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
                let derivative = k_derivative(self.prediction, sample, model_output, sigma)?;
                let dt = sigma_next - sigma;
                let prev = axpby(sample, 1.0, &derivative, dt)?;
                self.first_half = Some(FirstHalf { sample: sample.clone(), derivative, dt });
                Ok(prev)
            }
            Some(first) => {
                let derivative = k_derivative(self.prediction, sample, model_output, self.sigmas[i])?;
                // x_start + dt * (d1 + d2) / 2
                let both = first.derivative.add(&derivative)?;
                axpby(&first.sample, 1.0, &both, first.dt / 2.0)
            }
        }
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let sigma = self.sigmas[self.cursor.index(call, self.timesteps.len())?];
        axpby(original, 1.0, noise, sigma)
    }
}
