//! `PNDM` (diffusers' `PNDMScheduler` with `skip_prk_steps`, SD 1.5's own scheduler): pseudo
//! linear multistep (PLMS, Liu et al. 2022), a fourth-order Adams-Bashforth combination of
//! the last noise predictions. The first step is taken twice (an Euler step, then the
//! average of its two predictions), so `steps` steps make `steps + 1` model calls.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::schedule::{alphas_cumprod, np_linspace, np_round};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerError, SamplerName, axpby};

/// PLMS over the spaced timesteps.
pub struct Pndm {
    prediction: PredictionType,
    /// Integer timesteps, one per call: the second largest one repeated.
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    /// `T / steps` (integer division).
    stride: i64,
    /// Last (up to 4) model outputs, oldest first.
    history: Vec<Tensor>,
    /// The latents of the first step, which the second call restarts from.
    first_sample: Option<Tensor>,
    /// Calls run since the start (diffusers' `counter`).
    counter: usize,
    cursor: Cursor,
}

impl Pndm {
    /// The PLMS schedule for `steps` steps. Runge-Kutta warm-up steps (`skip_prk_steps`
    /// false, the class default) are refused.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if !config.skip_prk_steps.unwrap_or(false) {
            return Err(SamplerError::config(
                "skip_prk_steps",
                "PNDM's Runge-Kutta warm-up is not supported",
            ));
        }
        let train = config.num_train_timesteps;
        // Ascending.
        let ascending: Vec<f64> = match config.timestep_spacing.unwrap_or(TimestepSpacing::Leading) {
            TimestepSpacing::Linspace => {
                np_linspace(0.0, (train - 1) as f64, steps).into_iter().map(np_round).collect()
            }
            TimestepSpacing::Leading => {
                let ratio = train / steps;
                (0..steps).map(|i| (i * ratio + config.steps_offset) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train as f64 / steps as f64;
                (0..steps).rev().map(|i| np_round(train as f64 - i as f64 * ratio) - 1.0).collect()
            }
        };
        if let Some(t) = ascending.iter().find(|&&t| t < 0.0 || t >= train as f64) {
            return Err(SamplerError::Steps(format!(
                "{steps} steps give timestep {t}, outside [0, {train})"
            )));
        }
        // [t0 .. t(n-2), t(n-2), t(n-1)] reversed.
        let mut timesteps: Vec<f64> = ascending[..steps - 1].to_vec();
        if steps >= 2 {
            timesteps.push(ascending[steps - 2]);
        }
        timesteps.push(ascending[steps - 1]);
        timesteps.reverse();
        let alphas_cumprod = alphas_cumprod(config);
        let final_alpha_cumprod =
            if config.set_alpha_to_one.unwrap_or(false) { 1.0 } else { alphas_cumprod[0] };
        Ok(Pndm {
            prediction: config.prediction_type,
            timesteps,
            alphas_cumprod,
            final_alpha_cumprod,
            stride: (train / steps) as i64,
            history: Vec::new(),
            first_sample: None,
            counter: 0,
            cursor: Cursor::default(),
        })
    }

    fn alpha_at(&self, t: i64) -> f32 {
        if t >= 0 {
            self.alphas_cumprod[(t as usize).min(self.alphas_cumprod.len() - 1)]
        } else {
            self.final_alpha_cumprod
        }
    }
}

impl Sampler for Pndm {
    fn name(&self) -> SamplerName {
        SamplerName::PNDM
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
        let mut t = self.timesteps[i] as i64;
        let mut prev_t = t - self.stride;
        if self.counter == 1 {
            // The repeated timestep: redo the first step from its start.
            prev_t = t;
            t += self.stride;
        } else {
            if self.history.len() == 4 {
                self.history.remove(0);
            }
            self.history.push(model_output.clone());
        }
        let h = &self.history;
        let n = h.len();
        let mut from = sample.clone();
        let eps = if n == 1 && self.counter == 0 {
            self.first_sample = Some(sample.clone());
            model_output.clone()
        } else if n == 1 && self.counter == 1 {
            if let Some(first) = self.first_sample.take() {
                from = first;
            }
            axpby(model_output, 0.5, &h[0], 0.5)?
        } else if n == 2 {
            axpby(&h[1], 1.5, &h[0], -0.5)?
        } else if n == 3 {
            let acc = axpby(&h[2], 23.0 / 12.0, &h[1], -16.0 / 12.0)?;
            axpby(&acc, 1.0, &h[0], 5.0 / 12.0)?
        } else {
            let acc = axpby(&h[3], 55.0 / 24.0, &h[2], -59.0 / 24.0)?;
            let acc = axpby(&acc, 1.0, &h[1], 37.0 / 24.0)?;
            axpby(&acc, 1.0, &h[0], -9.0 / 24.0)?
        };
        self.counter += 1;
        let a_t = self.alpha_at(t) as f64;
        let a_prev = self.alpha_at(prev_t) as f64;
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let eps = match self.prediction {
            PredictionType::Epsilon => eps,
            PredictionType::VPrediction => axpby(&eps, a_t.sqrt(), &from, b_t.sqrt())?,
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        axpby(&from, sample_coeff, &eps, -(a_prev - a_t) / denom)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let t = self.timesteps[self.cursor.index(call, self.timesteps.len())?] as i64;
        let a = self.alpha_at(t) as f64;
        axpby(original, a.sqrt(), noise, (1.0 - a).sqrt())
    }
}
