//! `DPM_2`, `DPM_2_KARRAS` (diffusers' `KDPM2DiscreteScheduler`) and `DPM_2_ANCESTRAL`,
//! `DPM_2_ANCESTRAL_KARRAS` (`KDPM2AncestralDiscreteScheduler`): k-diffusion's DPM-Solver-2
//! (Karras et al. 2022's "DPM2"), a midpoint method in sigma. Each step calls the model at its
//! sigma, takes an Euler step to the log-midpoint sigma, calls the model there and steps the
//! whole interval with that slope; the ancestral variant steps to a lower sigma and adds fresh
//! noise. The last step (to sigma 0) is a single Euler call: `2 * steps - 1` model calls.
//!
//! The midpoint sigmas are float32 `log`/`lerp`/`exp` as diffusers computes them.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::heun::k_derivative;
use super::schedule::{
    alphas_cumprod, discrete_timesteps, interp, karras_sigmas, np_round, sigma_to_t, training_sigmas,
};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerName, axpby};

/// torch's `lerp(start, end, 0.5)` in float32.
fn lerp_half(start: f32, end: f32) -> f32 {
    end - (end - start) * 0.5
}

/// One step's sigmas: where it starts, its midpoint, where it lands, the noise added back.
#[derive(Debug, Clone, Copy)]
struct StepSigmas {
    sigma: f64,
    mid: f64,
    /// Where the second half lands (the next sigma; lower for the ancestral variant).
    down: f64,
    /// Noise added after the second half (ancestral only).
    up: f64,
}

/// DPM2 / DPM2 ancestral.
pub struct Dpm2 {
    name: SamplerName,
    ancestral: bool,
    prediction: PredictionType,
    /// One per call: `[t0, mid/t1, ...]`.
    timesteps: Vec<f64>,
    /// Per step `m`, its sigmas (`steps` entries).
    steps: Vec<StepSigmas>,
    /// diffusers' interleaved `sigmas` (one per call index, and the trailing zeros).
    interleaved: Vec<f64>,
    init_noise_sigma: f64,
    /// Latents the current step started from, between its two calls.
    first_sample: Option<Tensor>,
    cursor: Cursor,
}

impl Dpm2 {
    /// The schedule of `name` for `steps` steps.
    pub fn new(name: SamplerName, config: &SchedulerConfig, steps: usize, ancestral: bool) -> Self {
        let spacing = config.timestep_spacing.unwrap_or(TimestepSpacing::Linspace);
        let train = training_sigmas(&alphas_cumprod(config));
        let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
        let mut timesteps =
            discrete_timesteps(spacing, config.num_train_timesteps, steps, config.steps_offset);
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        if name.karras() || config.use_karras_sigmas {
            sigmas = karras_sigmas(sigmas[sigmas.len() - 1], sigmas[0], steps);
            timesteps = sigmas.iter().map(|&s| np_round(sigma_to_t(s, &log_sigmas))).collect();
        }
        sigmas.push(0.0);
        let s: Vec<f32> = sigmas.iter().map(|&x| x as f32).collect(); // [steps + 1], last 0
        let mut per_step = Vec::with_capacity(steps);
        for m in 0..steps {
            let (sigma, next) = (s[m], s[m + 1]);
            let step = if ancestral {
                let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
                let down = if m + 1 == steps { 0.0 } else { (next * next - up * up).sqrt() };
                // The last step has no midpoint (it is plain Euler to 0).
                let mid = if m + 1 == steps { 0.0 } else { lerp_half(sigma.ln(), down.ln()).exp() };
                StepSigmas { sigma: sigma as f64, mid: mid as f64, down: down as f64, up: up as f64 }
            } else {
                let mid = if m + 1 == steps { 0.0 } else { lerp_half(next.ln(), sigma.ln()).exp() };
                StepSigmas { sigma: sigma as f64, mid: mid as f64, down: next as f64, up: 0.0 }
            };
            per_step.push(step);
        }
        // Calls: t0, then per later step m: its midpoint timestep, then t_m.
        let mut calls = vec![timesteps[0]];
        for m in 1..steps {
            let previous_mid = per_step[m - 1].mid;
            calls.push(sigma_to_t(previous_mid, &log_sigmas) as f32 as f64);
            calls.push(timesteps[m] as f32 as f64);
        }
        calls[0] = calls[0] as f32 as f64;
        let mut interleaved = vec![s[0] as f64];
        for &x in &s[1..] {
            interleaved.extend([x as f64, x as f64]);
        }
        interleaved.push(0.0);
        let max = s.iter().fold(0.0f32, |a, &b| a.max(b));
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max as f64,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt() as f64,
        };
        Dpm2 {
            name,
            ancestral,
            prediction: config.prediction_type,
            timesteps: calls,
            steps: per_step,
            interleaved,
            init_noise_sigma,
            first_sample: None,
            cursor: Cursor::default(),
        }
    }

    /// The step a call index belongs to and whether it is the step's second (midpoint) call.
    fn step_of(index: usize) -> (usize, bool) {
        (index.div_ceil(2), index % 2 == 1)
    }
}

impl Sampler for Dpm2 {
    fn name(&self) -> SamplerName {
        self.name
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps[self.cursor.begin..]
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.interleaved)
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn start_at(&mut self, begin: usize) {
        self.cursor.start_at(begin);
        self.first_sample = None;
    }

    fn scale_model_input(&self, sample: &Tensor, call: usize) -> Result<Tensor> {
        let index = self.cursor.index(call, self.timesteps.len())?;
        let (m, second) = Self::step_of(index);
        let sigma = if second { self.steps[m - 1].mid } else { self.steps[m].sigma } as f32;
        Ok(sample.affine(1.0 / (sigma * sigma + 1.0).sqrt(), 0.0)?)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        call: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let index = self.cursor.advance(call, self.timesteps.len())?;
        let (m, second) = Self::step_of(index);
        if !second {
            let st = self.steps[m];
            let derivative = k_derivative(self.prediction, sample, model_output, st.sigma)?;
            self.first_sample = Some(sample.clone());
            return axpby(sample, 1.0, &derivative, st.mid - st.sigma);
        }
        let st = self.steps[m - 1];
        let derivative = k_derivative(self.prediction, sample, model_output, st.mid)?;
        let start = self.first_sample.take().unwrap_or_else(|| sample.clone());
        let prev = axpby(&start, 1.0, &derivative, st.down - st.sigma)?;
        if !self.ancestral {
            return Ok(prev);
        }
        let z = noise.normal(sample.dims(), sample.dtype(), sample.device())?;
        axpby(&prev, 1.0, &z, st.up)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let sigma = self.interleaved[self.cursor.index(call, self.timesteps.len())?];
        axpby(original, 1.0, noise, sigma)
    }
}
