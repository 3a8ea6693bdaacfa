//! `LCM` (diffusers' `LCMScheduler`): latent consistency model sampling. Each step maps the
//! latents to the consistency function's clean estimate (the model's x0 blended with the
//! input by the boundary-condition scalings) and, except after the last step, re-noises it to
//! the next timestep with fresh noise. The timesteps are a subset of the 50-step schedule the
//! model was distilled on (`original_inference_steps` 50, `timestep_scaling` 10: diffusers'
//! defaults, which kiln uses for every configuration).

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig};
use super::schedule::alphas_cumprod;
use super::{Cursor, NoiseSource, Result, Sampler, SamplerError, SamplerName, axpby};

/// Steps of the distillation schedule.
const ORIGINAL_STEPS: usize = 50;
/// Scale from timestep to the consistency parametrisation's time.
const TIMESTEP_SCALING: f32 = 10.0;
/// sigma_data of the boundary condition.
const SIGMA_DATA: f32 = 0.5;

/// Multi-step consistency sampling.
pub struct Lcm {
    prediction: PredictionType,
    /// Integer timesteps, one per call.
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    cursor: Cursor,
}

impl Lcm {
    /// The schedule for `steps` steps (at most 50).
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if config.clip_sample == Some(true) {
            return Err(SamplerError::config("clip_sample", "LCM sample clipping is not supported"));
        }
        let train = config.num_train_timesteps;
        if ORIGINAL_STEPS > train {
            return Err(SamplerError::config(
                "num_train_timesteps",
                format!("LCM needs at least {ORIGINAL_STEPS}"),
            ));
        }
        if steps > ORIGINAL_STEPS {
            return Err(SamplerError::Steps(format!(
                "LCM runs at most {ORIGINAL_STEPS} steps, {steps} asked"
            )));
        }
        let k = train / ORIGINAL_STEPS;
        // The distillation timesteps, descending: 50k - 1, ..., k - 1.
        let origin: Vec<usize> = (1..=ORIGINAL_STEPS).rev().map(|i| i * k - 1).collect();
        let stride = ORIGINAL_STEPS as f64 / steps as f64;
        let timesteps = (0..steps).map(|i| origin[(i as f64 * stride).floor() as usize] as f64).collect();
        Ok(Lcm {
            prediction: config.prediction_type,
            timesteps,
            alphas_cumprod: alphas_cumprod(config),
            cursor: Cursor::default(),
        })
    }
}

impl Sampler for Lcm {
    fn name(&self) -> SamplerName {
        SamplerName::LCM
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
        let last = i + 1 == self.timesteps.len();
        let prev_t = if last { t } else { self.timesteps[i + 1] as usize };
        // float32 scalars, as diffusers' 0-dim tensors.
        let a_t = self.alphas_cumprod[t];
        let a_prev = self.alphas_cumprod[prev_t];
        let scaled = t as f32 * TIMESTEP_SCALING;
        let c_skip = SIGMA_DATA * SIGMA_DATA / (scaled * scaled + SIGMA_DATA * SIGMA_DATA);
        let c_out = scaled / (scaled * scaled + SIGMA_DATA * SIGMA_DATA).sqrt();
        let (sa, sb) = (a_t.sqrt() as f64, (1.0 - a_t).sqrt() as f64);
        let x0 = match self.prediction {
            PredictionType::Epsilon => axpby(sample, 1.0 / sa, model_output, -sb / sa)?,
            PredictionType::VPrediction => axpby(sample, sa, model_output, -sb)?,
        };
        let denoised = axpby(&x0, c_out as f64, sample, c_skip as f64)?;
        if last {
            return Ok(denoised);
        }
        let z = noise.normal(sample.dims(), sample.dtype(), sample.device())?;
        axpby(&denoised, a_prev.sqrt() as f64, &z, (1.0 - a_prev).sqrt() as f64)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let t = self.timesteps[self.cursor.index(call, self.timesteps.len())?] as usize;
        let a = self.alphas_cumprod[t] as f64;
        axpby(original, a.sqrt(), noise, (1.0 - a).sqrt())
    }
}
