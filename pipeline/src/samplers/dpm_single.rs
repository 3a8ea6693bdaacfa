//! `DPM_SINGLE` (diffusers' `DPMSolverSinglestepScheduler` with its defaults: order 2,
//! DPM-Solver++, midpoint, `lower_order_final`, final sigma zero): single-step DPM-Solver++(2S).
//! Steps alternate orders 1 and 2: an order-1 step remembers where it started, and the
//! following order-2 step jumps over both intervals from there, using the two data
//! predictions. The timesteps are always spaced `linspace`, as diffusers does for this class.
//!
//! The coefficients are float32 arithmetic on float32 sigmas, as diffusers' 0-dim tensors.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::dpm_multistep::{alpha_sigma, lambda, vp_schedule};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerName, axpby};

/// DPM-Solver++(2S).
pub struct DpmSingle {
    prediction: PredictionType,
    /// Integer timesteps, one per call.
    timesteps: Vec<f64>,
    /// `timesteps.len() + 1` float32 values, the last 0.
    sigmas: Vec<f64>,
    /// The order of each step: 1, 2, 1, 2, ..., ending in 1.
    orders: Vec<usize>,
    /// The previous call's data prediction.
    previous_x0: Option<Tensor>,
    /// The latents the last order-1 step started from.
    start: Option<Tensor>,
    cursor: Cursor,
}

impl DpmSingle {
    /// The schedule for `steps` steps (Karras sigmas where the config asks).
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        let linspace =
            SchedulerConfig { timestep_spacing: Some(TimestepSpacing::Linspace), ..config.clone() };
        let (timesteps, sigmas) = vp_schedule(&linspace, steps, config.use_karras_sigmas);
        let mut orders: Vec<usize> = if steps % 2 == 0 {
            (0..steps - 2).map(|i| 1 + i % 2).chain([1, 1]).collect()
        } else {
            (0..steps - 1).map(|i| 1 + i % 2).chain([1]).collect()
        };
        if let Some(last) = orders.last_mut() {
            *last = 1;
        }
        DpmSingle {
            prediction: config.prediction_type,
            timesteps,
            sigmas,
            orders,
            previous_x0: None,
            start: None,
            cursor: Cursor::default(),
        }
    }
}

impl Sampler for DpmSingle {
    fn name(&self) -> SamplerName {
        SamplerName::DPM_SINGLE
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps[self.cursor.begin..]
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
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
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[i] as f32);
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i + 1] as f32);
        let x0 = match self.prediction {
            PredictionType::Epsilon => {
                axpby(sample, 1.0 / alpha_s0 as f64, model_output, -(sigma_s0 / alpha_s0) as f64)?
            }
            PredictionType::VPrediction => axpby(sample, alpha_s0 as f64, model_output, -sigma_s0 as f64)?,
        };
        let previous = self.previous_x0.replace(x0.clone());
        let second = match (self.orders[i], previous, self.start.take()) {
            (2, Some(m1), Some(start)) => Some((m1, start)),
            _ => None,
        };
        let lambda_t = lambda(alpha_t, sigma_t);
        match second {
            None => {
                self.start = Some(sample.clone());
                let h = lambda_t - lambda(alpha_s0, sigma_s0);
                let c = alpha_t * ((-h).exp() - 1.0);
                axpby(sample, (sigma_t / sigma_s0) as f64, &x0, -c as f64)
            }
            Some((m1, start)) => {
                let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[i - 1] as f32);
                let lambda_s1 = lambda(alpha_s1, sigma_s1);
                let (h, h_0) = (lambda_t - lambda_s1, lambda(alpha_s0, sigma_s0) - lambda_s1);
                let r0 = h_0 / h;
                let c = alpha_t * ((-h).exp() - 1.0);
                // (sigma_t / sigma_s1) start - c m1 - 0.5 c (m0 - m1) / r0
                let out = axpby(&start, (sigma_t / sigma_s1) as f64, &m1, -c as f64)?;
                let d1 = axpby(&x0, (1.0 / r0) as f64, &m1, -(1.0 / r0) as f64)?;
                axpby(&out, 1.0, &d1, (-0.5 * c) as f64)
            }
        }
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let sigma = self.sigmas[self.cursor.index(call, self.timesteps.len())?] as f32;
        let (alpha, sigma) = alpha_sigma(sigma);
        axpby(original, alpha as f64, noise, sigma as f64)
    }
}
