//! `DDIM` (diffusers' `DDIMScheduler`, eta 0): deterministic DDIM steps in alphas between the
//! spaced timesteps.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::schedule::{alphas_cumprod, integer_timesteps};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerError, SamplerName, axpby};

/// DDIM with eta 0.
pub struct Ddim {
    prediction: PredictionType,
    /// Integer timesteps, one per call.
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    /// The alpha product past the last step (1 or `alphas_cumprod[0]`).
    final_alpha_cumprod: f32,
    /// `T / steps` (integer division): how far back each step goes.
    stride: i64,
    cursor: Cursor,
}

impl Ddim {
    /// The schedule for `steps` steps. `clip_sample` (DDIM's default when the file does not
    /// say) has no device op here yet and is refused.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if config.clip_sample.unwrap_or(true) {
            return Err(SamplerError::config("clip_sample", "DDIM sample clipping is not supported"));
        }
        let train = config.num_train_timesteps;
        let timesteps = integer_timesteps(
            config.timestep_spacing.unwrap_or(TimestepSpacing::Leading),
            train,
            steps,
            config.steps_offset,
        );
        if let Some(t) = timesteps.iter().find(|&&t| t < 0.0 || t >= train as f64) {
            return Err(SamplerError::Steps(format!(
                "{steps} steps give timestep {t}, outside [0, {train})"
            )));
        }
        let alphas_cumprod = alphas_cumprod(config);
        let final_alpha_cumprod =
            if config.set_alpha_to_one.unwrap_or(true) { 1.0 } else { alphas_cumprod[0] };
        Ok(Ddim {
            prediction: config.prediction_type,
            timesteps,
            alphas_cumprod,
            final_alpha_cumprod,
            stride: (train / steps) as i64,
            cursor: Cursor::default(),
        })
    }

    fn alpha_at(&self, t: i64) -> f32 {
        if t >= 0 { self.alphas_cumprod[t as usize] } else { self.final_alpha_cumprod }
    }
}

impl Sampler for Ddim {
    fn name(&self) -> SamplerName {
        SamplerName::DDIM
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
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let i = self.cursor.advance(call, self.timesteps.len())?;
        let t = self.timesteps[i] as i64;
        let a_t = self.alpha_at(t) as f64;
        let a_prev = self.alpha_at(t - self.stride) as f64;
        let (sa, sb) = (a_t.sqrt(), (1.0 - a_t).sqrt());
        let (sa_prev, sb_prev) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
        // prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps, x0 and eps from the prediction.
        match self.prediction {
            PredictionType::Epsilon => {
                // x0 = (x - sb * eps) / sa
                let x0 = axpby(sample, 1.0 / sa, model_output, -sb / sa)?;
                axpby(&x0, sa_prev, model_output, sb_prev)
            }
            PredictionType::VPrediction => {
                let x0 = axpby(sample, sa, model_output, -sb)?;
                let eps = axpby(model_output, sa, sample, sb)?;
                axpby(&x0, sa_prev, &eps, sb_prev)
            }
        }
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let t = self.timesteps[self.cursor.index(call, self.timesteps.len())?] as i64;
        let a = self.alpha_at(t) as f64;
        axpby(original, a.sqrt(), noise, (1.0 - a).sqrt())
    }
}
