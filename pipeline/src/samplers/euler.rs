//! `K_EULER` (diffusers' `EulerDiscreteScheduler`) and `K_EULER_ANCESTRAL`
//! (`EulerAncestralDiscreteScheduler`): Karras et al.'s Euler method in sigma, the ancestral
//! variant stepping to a lower sigma and adding fresh noise back up to the next one.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::schedule::{
    alphas_cumprod, discrete_timesteps, interp, karras_sigmas, sigma_to_t, training_sigmas,
};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerName, axpby};

/// Euler / Euler ancestral over an interpolated (or Karras) sigma schedule.
pub struct Euler {
    ancestral: bool,
    prediction: PredictionType,
    /// One per call; float32 values.
    timesteps: Vec<f64>,
    /// `timesteps.len() + 1` float32 values, the last 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    cursor: Cursor,
}

impl Euler {
    /// The schedule for `steps` steps (Karras sigmas where the config asks, Euler only).
    pub fn new(config: &SchedulerConfig, steps: usize, ancestral: bool) -> Self {
        let spacing = config.timestep_spacing.unwrap_or(TimestepSpacing::Linspace);
        let train = training_sigmas(&alphas_cumprod(config));
        let mut timesteps =
            discrete_timesteps(spacing, config.num_train_timesteps, steps, config.steps_offset);
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        if config.use_karras_sigmas && !ancestral {
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
        Euler {
            ancestral,
            prediction: config.prediction_type,
            timesteps,
            sigmas,
            init_noise_sigma,
            cursor: Cursor::default(),
        }
    }
}

impl Sampler for Euler {
    fn name(&self) -> SamplerName {
        if self.ancestral { SamplerName::K_EULER_ANCESTRAL } else { SamplerName::K_EULER }
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
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let i = self.cursor.advance(call, self.timesteps.len())?;
        let (sigma, sigma_next) = (self.sigmas[i], self.sigmas[i + 1]);
        // The sigma the step lands on before noise is added back (the next sigma for Euler).
        let (sigma_to, sigma_up) = if self.ancestral {
            let up = (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma))
                .sqrt();
            ((sigma_next * sigma_next - up * up).max(0.0).sqrt(), up)
        } else {
            (sigma_next, 0.0)
        };
        let dt = sigma_to - sigma;
        // x + dt * (x - x0) / sigma, with x0 the predicted clean latents.
        let prev = match self.prediction {
            PredictionType::Epsilon => axpby(sample, 1.0, model_output, dt)?,
            PredictionType::VPrediction => {
                let s2 = sigma * sigma + 1.0;
                let x0 = axpby(model_output, -sigma / s2.sqrt(), sample, 1.0 / s2)?;
                axpby(sample, 1.0 + dt / sigma, &x0, -dt / sigma)?
            }
        };
        if !self.ancestral {
            return Ok(prev);
        }
        let z = noise.normal(sample.dims(), sample.dtype(), sample.device())?;
        axpby(&prev, 1.0, &z, sigma_up)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let sigma = self.sigmas[self.cursor.index(call, self.timesteps.len())?];
        axpby(original, 1.0, noise, sigma)
    }
}
