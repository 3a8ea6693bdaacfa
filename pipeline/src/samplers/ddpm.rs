//! `DDPM` (diffusers' `DDPMScheduler`, `fixed_small` variance): ancestral sampling of the
//! DDPM posterior between the spaced timesteps, fresh noise at every step but the last.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::schedule::{alphas_cumprod, integer_timesteps};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerError, SamplerName, axpby};

/// DDPM posterior sampling.
pub struct Ddpm {
    prediction: PredictionType,
    /// Integer timesteps, one per call.
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    cursor: Cursor,
}

impl Ddpm {
    /// The schedule for `steps` steps. `clip_sample` (DDPM's default when the file does not
    /// say) is refused.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if config.clip_sample.unwrap_or(true) {
            return Err(SamplerError::config("clip_sample", "DDPM sample clipping is not supported"));
        }
        let train = config.num_train_timesteps;
        if steps > train {
            return Err(SamplerError::Steps(format!("{steps} steps exceed the {train} training timesteps")));
        }
        let spacing = config.timestep_spacing.unwrap_or(TimestepSpacing::Leading);
        let timesteps = integer_timesteps(spacing, train, steps, config.steps_offset);
        if let Some(t) = timesteps.iter().find(|&&t| t < 0.0 || t >= train as f64) {
            return Err(SamplerError::Steps(format!(
                "{steps} steps give timestep {t}, outside [0, {train})"
            )));
        }
        Ok(Ddpm {
            prediction: config.prediction_type,
            timesteps,
            alphas_cumprod: alphas_cumprod(config),
            cursor: Cursor::default(),
        })
    }
}

impl Sampler for Ddpm {
    fn name(&self) -> SamplerName {
        SamplerName::DDPM
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps[self.cursor.begin..]
    }

    fn sigmas(&self) -> Option<&[f64]> {
        None
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn start_at(&mut self, begin: usize) {
        self.cursor.start_at(begin);
    }

    fn scale_model_input(&self, sample: &Tensor, call: usize) -> Result<Tensor> {
        self.cursor.index(call, self.timesteps.len())?;
        Ok(sample.clone())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        call: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let i = self.cursor.advance(call, self.timesteps.len())?;
        let t = self.timesteps[i] as usize;
        // float32 scalars, as diffusers' 0-dim tensors.
        let a_t = self.alphas_cumprod[t];
        let a_prev = match self.timesteps.get(i + 1) {
            Some(&prev) => self.alphas_cumprod[prev as usize],
            None => 1.0,
        };
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let current_alpha = a_t / a_prev;
        let current_beta = 1.0 - current_alpha;
        let x0 = match self.prediction {
            PredictionType::Epsilon => {
                axpby(sample, 1.0 / a_t.sqrt() as f64, model_output, -(b_t.sqrt() / a_t.sqrt()) as f64)?
            }
            PredictionType::VPrediction => {
                axpby(sample, a_t.sqrt() as f64, model_output, -b_t.sqrt() as f64)?
            }
        };
        let c_x0 = a_prev.sqrt() * current_beta / b_t;
        let c_x = current_alpha.sqrt() * b_prev / b_t;
        let mean = axpby(&x0, c_x0 as f64, sample, c_x as f64)?;
        if t == 0 {
            return Ok(mean);
        }
        let variance = (b_prev / b_t * current_beta).max(1e-20);
        let z = noise.normal(sample.dims(), sample.dtype(), sample.device())?;
        axpby(&mean, 1.0, &z, variance.sqrt() as f64)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let t = self.timesteps[self.cursor.index(call, self.timesteps.len())?] as usize;
        let a = self.alphas_cumprod[t] as f64;
        axpby(original, a.sqrt(), noise, (1.0 - a).sqrt())
    }
}
