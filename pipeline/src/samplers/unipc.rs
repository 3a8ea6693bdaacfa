//! `UNI_PC` (diffusers' `UniPCMultistepScheduler` with its defaults: order 2, `bh2`, data
//! prediction, `lower_order_final`): Zhao et al.'s unified predictor-corrector. Each call
//! first corrects the latents the previous step predicted (UniC, using the new model output),
//! then predicts the next latents (UniP, a multistep DPM-Solver++-like update).
//!
//! The coefficients are float32 arithmetic on float32 sigmas, as diffusers' 0-dim tensors.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig};
use super::dpm_multistep::{alpha_sigma, lambda, vp_schedule};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerName, axpby};

/// Solver order (history length).
const ORDER: usize = 2;

/// UniPC-bh2, order 2.
pub struct UniPc {
    prediction: PredictionType,
    /// Integer timesteps, one per call.
    timesteps: Vec<f64>,
    /// `timesteps.len() + 1` float32 values, the last 0.
    sigmas: Vec<f64>,
    /// Data predictions (x0) of the last calls, oldest first (at most 2).
    x0_history: Vec<Tensor>,
    /// The latents the last predictor started from (what the corrector redoes).
    last_sample: Option<Tensor>,
    /// Order of the last predictor step (the corrector's order).
    last_order: usize,
    /// Steps run so far, capped at the order (diffusers' `lower_order_nums`).
    lower_order_nums: usize,
    cursor: Cursor,
}

impl UniPc {
    /// The schedule for `steps` steps (Karras sigmas where the config asks).
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        let (timesteps, sigmas) = vp_schedule(config, steps, config.use_karras_sigmas);
        UniPc {
            prediction: config.prediction_type,
            timesteps,
            sigmas,
            x0_history: Vec::new(),
            last_sample: None,
            last_order: 1,
            lower_order_nums: 0,
            cursor: Cursor::default(),
        }
    }

    fn lambda_at(&self, index: usize) -> f32 {
        let (a, s) = alpha_sigma(self.sigmas[index] as f32);
        lambda(a, s)
    }

    /// `(sigma_t / sigma_s0, alpha_t, h_phi_1 = B_h = expm1(-h), h)` for the interval from
    /// sigma index `from` to `to`.
    fn interval(&self, from: usize, to: usize) -> (f32, f32, f32, f32) {
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[from] as f32);
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[to] as f32);
        let h = lambda(alpha_t, sigma_t) - lambda(alpha_s0, sigma_s0);
        (sigma_t / sigma_s0, alpha_t, (-h).exp_m1(), h)
    }
}

/// The UniC order-2 weights `rhos` solving `[[1, 1], [rk, 1]] rhos = b` (bh2).
fn corrector_rhos(rk: f32, h: f32) -> (f32, f32) {
    let hh = -h;
    let b_h = hh.exp_m1();
    let mut h_phi_k = hh.exp_m1() / hh - 1.0;
    let b1 = h_phi_k / b_h;
    h_phi_k = h_phi_k / hh - 0.5;
    let b2 = h_phi_k * 2.0 / b_h;
    let r0 = (b1 - b2) / (1.0 - rk);
    (r0, b1 - r0)
}

impl Sampler for UniPc {
    fn name(&self) -> SamplerName {
        SamplerName::UNI_PC
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
        let len = self.timesteps.len();
        let i = self.cursor.advance(call, len)?;
        let (alpha, sigma) = alpha_sigma(self.sigmas[i] as f32);
        let x0 = match self.prediction {
            PredictionType::Epsilon => {
                axpby(sample, 1.0 / alpha as f64, model_output, -(sigma / alpha) as f64)?
            }
            PredictionType::VPrediction => axpby(sample, alpha as f64, model_output, -sigma as f64)?,
        };
        // UniC: redo the last step from its start with the new model output.
        let mut sample = sample.clone();
        if let (true, Some(last), Some(m0)) = (i > 0, self.last_sample.take(), self.x0_history.last()) {
            let (ratio, alpha_t, b_h, h) = self.interval(i - 1, i);
            let base = axpby(&last, ratio as f64, m0, -(alpha_t * b_h) as f64)?;
            let d1_t = axpby(&x0, 1.0, m0, -1.0)?;
            sample = if self.last_order == 1 || self.x0_history.len() < 2 {
                axpby(&base, 1.0, &d1_t, -(alpha_t * b_h * 0.5) as f64)?
            } else {
                let m1 = &self.x0_history[self.x0_history.len() - 2];
                let rk = (self.lambda_at(i - 2) - self.lambda_at(i - 1)) / h;
                let (r0, r1) = corrector_rhos(rk, h);
                // D1 = (m1 - m0) / rk
                let d1 = axpby(m1, (1.0 / rk) as f64, m0, -(1.0 / rk) as f64)?;
                let corr = axpby(&d1, r0 as f64, &d1_t, r1 as f64)?;
                axpby(&base, 1.0, &corr, -(alpha_t * b_h) as f64)?
            };
        }
        if self.x0_history.len() == ORDER {
            self.x0_history.remove(0);
        }
        self.x0_history.push(x0);
        let order = ORDER.min(len - i).min(self.lower_order_nums + 1);
        self.last_order = order;
        self.last_sample = Some(sample.clone());
        // UniP from sigma i to i + 1.
        let (ratio, alpha_t, h_phi_1, h) = self.interval(i, i + 1);
        let m0 = &self.x0_history[self.x0_history.len() - 1];
        let mut prev = axpby(&sample, ratio as f64, m0, -(alpha_t * h_phi_1) as f64)?;
        if order == 2 {
            let m1 = &self.x0_history[self.x0_history.len() - 2];
            let rk = (self.lambda_at(i - 1) - self.lambda_at(i)) / h;
            let d1 = axpby(m1, (1.0 / rk) as f64, m0, -(1.0 / rk) as f64)?;
            // B_h = h_phi_1 for bh2; rho_p = 0.5.
            prev = axpby(&prev, 1.0, &d1, -(alpha_t * h_phi_1 * 0.5) as f64)?;
        }
        self.lower_order_nums = (self.lower_order_nums + 1).min(ORDER);
        Ok(prev)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let sigma = self.sigmas[self.cursor.index(call, self.timesteps.len())?] as f32;
        let (alpha, sigma) = alpha_sigma(sigma);
        axpby(original, alpha as f64, noise, sigma as f64)
    }
}
