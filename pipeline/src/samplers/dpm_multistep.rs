//! `DPM_SOLVER_MULTISTEP`, `DPM_PLUS_PLUS_2M_KARRAS`, `DPM_PLUS_PLUS_2M_SDE`,
//! `DPM_PLUS_PLUS_2M_SDE_KARRAS`: diffusers' `DPMSolverMultistepScheduler` with its defaults
//! (solver order 2, midpoint solver, `lower_order_final`, final sigma zero) and algorithm
//! `dpmsolver++` or `sde-dpmsolver++` (Lu et al., DPM-Solver++, data prediction in log-SNR).
//!
//! The per-step coefficients are float32 arithmetic on float32 sigmas, as diffusers computes
//! them with 0-dim float32 tensors.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::schedule::{
    alphas_cumprod, interp, karras_sigmas, np_linspace, np_round, sigma_to_t, training_sigmas,
};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerName, axpby};

/// DPM-Solver++(2M), deterministic or SDE.
pub struct DpmMultistep {
    name: SamplerName,
    sde: bool,
    prediction: PredictionType,
    /// Integer timesteps, one per call.
    timesteps: Vec<f64>,
    /// `timesteps.len() + 1` float32 values, the last 0.
    sigmas: Vec<f64>,
    /// The previous call's data prediction (x0), for the second-order update.
    previous_x0: Option<Tensor>,
    /// Updates run so far (diffusers' `lower_order_nums`, capped at 2).
    lower_order_nums: usize,
    cursor: Cursor,
}

/// The integer timesteps (`steps`) and float32 sigmas (`steps + 1`, the last 0) of diffusers'
/// multistep VP solvers (DPM-Solver++, UniPC): `steps + 1` spaced points without the last.
pub(super) fn vp_schedule(config: &SchedulerConfig, steps: usize, karras: bool) -> (Vec<f64>, Vec<f64>) {
    let train_len = config.num_train_timesteps;
    let train = training_sigmas(&alphas_cumprod(config));
    let mut timesteps: Vec<f64> = match config.timestep_spacing.unwrap_or(TimestepSpacing::Linspace) {
        TimestepSpacing::Linspace => {
            let mut t: Vec<f64> =
                np_linspace(0.0, (train_len - 1) as f64, steps + 1).into_iter().map(np_round).collect();
            t.reverse();
            t.truncate(steps);
            t
        }
        TimestepSpacing::Leading => {
            let ratio = train_len / (steps + 1);
            (1..=steps).rev().map(|i| (i * ratio + config.steps_offset) as f64).collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = train_len as f64 / steps as f64;
            (0..steps).map(|i| np_round(train_len as f64 - i as f64 * ratio) - 1.0).collect()
        }
    };
    let mut sigmas: Vec<f64> = if karras {
        let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
        let sigmas = karras_sigmas(train[0] as f64, train[train_len - 1] as f64, steps);
        timesteps = sigmas.iter().map(|&s| np_round(sigma_to_t(s, &log_sigmas))).collect();
        sigmas
    } else {
        timesteps.iter().map(|&t| interp(t, &train)).collect()
    };
    sigmas.push(0.0);
    (timesteps, sigmas.into_iter().map(|s| s as f32 as f64).collect())
}

/// `(alpha_t, sigma_t)` of the VP process with noise-to-signal ratio `sigma`, in float32.
pub(super) fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// log(alpha / sigma) in float32 (+inf at sigma 0).
pub(super) fn lambda(alpha: f32, sigma: f32) -> f32 {
    alpha.ln() - sigma.ln()
}

impl DpmMultistep {
    /// The schedule of `name` for `steps` steps.
    pub fn new(name: SamplerName, config: &SchedulerConfig, steps: usize) -> Self {
        let (timesteps, sigmas) = vp_schedule(config, steps, name.karras() || config.use_karras_sigmas);
        let sde =
            matches!(name, SamplerName::DPM_PLUS_PLUS_2M_SDE | SamplerName::DPM_PLUS_PLUS_2M_SDE_KARRAS);
        DpmMultistep {
            name,
            sde,
            prediction: config.prediction_type,
            timesteps,
            sigmas,
            previous_x0: None,
            lower_order_nums: 0,
            cursor: Cursor::default(),
        }
    }
}

impl Sampler for DpmMultistep {
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
        let len = self.timesteps.len();
        let i = self.cursor.advance(call, len)?;
        // The last step is first order (final sigma zero), as is the first (no history yet).
        let last = i == len - 1;
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[i] as f32);
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i + 1] as f32);
        // Data prediction x0 from the model output.
        let x0 = match self.prediction {
            PredictionType::Epsilon => {
                axpby(sample, 1.0 / alpha_s0 as f64, model_output, -(sigma_s0 / alpha_s0) as f64)?
            }
            PredictionType::VPrediction => axpby(sample, alpha_s0 as f64, model_output, -sigma_s0 as f64)?,
        };
        let z =
            if self.sde { Some(noise.normal(sample.dims(), sample.dtype(), sample.device())?) } else { None };
        let h = lambda(alpha_t, sigma_t) - lambda(alpha_s0, sigma_s0);
        let previous = self.previous_x0.take();
        let first_order = self.lower_order_nums < 1 || last || previous.is_none();
        let mut out = if self.sde {
            let decay = (-2.0 * h).exp();
            let c_x = sigma_t / sigma_s0 * (-h).exp();
            let c_d = alpha_t * (1.0 - decay);
            let mut out = axpby(sample, c_x as f64, &x0, c_d as f64)?;
            if let (false, Some(m1)) = (first_order, previous.as_ref()) {
                let r0 = self.h_previous(i) / h;
                // 0.5 * c_d * D1, D1 = (x0 - m1) / r0.
                let d1 = axpby(&x0, (1.0 / r0) as f64, m1, -(1.0 / r0) as f64)?;
                out = axpby(&out, 1.0, &d1, (0.5 * c_d) as f64)?;
            }
            out
        } else {
            let c = alpha_t * ((-h).exp() - 1.0);
            let mut out = axpby(sample, (sigma_t / sigma_s0) as f64, &x0, -c as f64)?;
            if let (false, Some(m1)) = (first_order, previous.as_ref()) {
                let r0 = self.h_previous(i) / h;
                let d1 = axpby(&x0, (1.0 / r0) as f64, m1, -(1.0 / r0) as f64)?;
                out = axpby(&out, 1.0, &d1, (-0.5 * c) as f64)?;
            }
            out
        };
        if let Some(z) = z {
            let c_z = sigma_t * (1.0 - (-2.0 * h).exp()).sqrt();
            out = axpby(&out, 1.0, &z, c_z as f64)?;
        }
        self.previous_x0 = Some(x0);
        self.lower_order_nums = (self.lower_order_nums + 1).min(2);
        Ok(out)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let sigma = self.sigmas[self.cursor.index(call, self.timesteps.len())?] as f32;
        let (alpha, sigma) = alpha_sigma(sigma);
        axpby(original, alpha as f64, noise, sigma as f64)
    }
}

impl DpmMultistep {
    /// `lambda(s0) - lambda(s1)`: the log-SNR step before call `i`.
    fn h_previous(&self, i: usize) -> f32 {
        let (a0, s0) = alpha_sigma(self.sigmas[i] as f32);
        let (a1, s1) = alpha_sigma(self.sigmas[i - 1] as f32);
        lambda(a0, s0) - lambda(a1, s1)
    }
}
