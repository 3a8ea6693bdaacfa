//! `DPM_PLUS_PLUS_SDE_KARRAS` (diffusers' `DPMSolverSDEScheduler`, Karras sigmas):
//! k-diffusion's DPM-Solver++(2S) SDE sampler, two model calls per step. The first call takes
//! an ancestral data-prediction step to the log-midpoint of the interval, the second steps the
//! whole interval from the start with the midpoint's prediction; both add noise back. The last
//! step (to sigma 0) is a single Euler call.
//!
//! Noise: diffusers draws Brownian-tree increments (torchsde, correlated across the two
//! half-steps of a step) over `[smallest non-zero sigma, largest sigma]` of the whole schedule;
//! kiln asks its [`NoiseSource`] for the same increments ([`NoiseSource::brownian`], which the
//! pipeline answers with [`super::brownian`]'s tree). The step parity test replays diffusers'
//! recorded increments, so the update rule itself is held to diffusers.
//!
//! The step scalars are float32 arithmetic on float32 sigmas, as diffusers' 0-dim tensors.

use kiln_runtime::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::heun::k_derivative;
use super::schedule::{
    alphas_cumprod, interp, karras_sigmas, np_linspace, np_round, sigma_to_t, training_sigmas,
};
use super::{Cursor, NoiseSource, Result, Sampler, SamplerName, axpby};

/// The first call's state, kept for the second.
struct Midpoint {
    /// Latents the step started from.
    sample: Tensor,
    /// Sigma of the midpoint (the second call's input scaling).
    sigma: f32,
}

/// DPM-Solver++(2S) SDE.
pub struct DpmSde {
    prediction: PredictionType,
    /// One per call: `[t0, mid0, t1, mid1, ..., t(n-1)]`.
    timesteps: Vec<f64>,
    /// diffusers' interleaved sigmas `[s0, s1, s1, ..., s(n-1), s(n-1), 0]`, float32 values.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    /// The Brownian path's span: smallest non-zero and largest sigma (float32 values).
    span: [f32; 2],
    midpoint: Option<Midpoint>,
    cursor: Cursor,
}

/// `t = -ln(sigma)` and back, in float32.
fn t_of(sigma: f32) -> f32 {
    -sigma.ln()
}

fn sigma_of(t: f32) -> f32 {
    (-t).exp()
}

impl DpmSde {
    /// The schedule for `steps` steps (Karras sigmas as the name says, or as the config asks).
    pub fn new(name: SamplerName, config: &SchedulerConfig, steps: usize) -> Self {
        let spacing = config.timestep_spacing.unwrap_or(TimestepSpacing::Linspace);
        let train_len = config.num_train_timesteps;
        let train = training_sigmas(&alphas_cumprod(config));
        let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
        // float64 timesteps here (diffusers' linspace has dtype float for this class).
        let mut timesteps: Vec<f64> = match spacing {
            TimestepSpacing::Linspace => {
                np_linspace(0.0, (train_len - 1) as f64, steps).into_iter().rev().collect()
            }
            TimestepSpacing::Leading => {
                let ratio = train_len / steps;
                (0..steps).rev().map(|i| (i * ratio + config.steps_offset) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train_len as f64 / steps as f64;
                (0..steps).map(|i| np_round(train_len as f64 - i as f64 * ratio) - 1.0).collect()
            }
        };
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        if name.karras() || config.use_karras_sigmas {
            sigmas = karras_sigmas(sigmas[sigmas.len() - 1], sigmas[0], steps);
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
        }
        // Midpoints in log-sigma, float64 as numpy.
        let mids: Vec<f64> = sigmas
            .windows(2)
            .map(|w| {
                let (t0, t1) = (-w[0].ln(), -w[1].ln());
                sigma_to_t((-(t0 + (t1 - t0) * 0.5)).exp(), &log_sigmas)
            })
            .collect();
        let mut calls = vec![timesteps[0]];
        for m in 1..steps {
            calls.extend([mids[m - 1], timesteps[m]]);
        }
        let s: Vec<f64> = sigmas.iter().map(|&x| x as f32 as f64).collect();
        let mut interleaved = vec![s[0]];
        for &x in &s[1..] {
            interleaved.extend([x, x]);
        }
        interleaved.push(0.0);
        let max = interleaved.iter().fold(0.0f32, |a, &b| a.max(b as f32));
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max as f64,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt() as f64,
        };
        let min = interleaved.iter().filter(|&&x| x > 0.0).fold(f32::INFINITY, |a, &b| a.min(b as f32));
        DpmSde {
            prediction: config.prediction_type,
            span: [min, max],
            timesteps: calls,
            sigmas: interleaved,
            init_noise_sigma,
            midpoint: None,
            cursor: Cursor::default(),
        }
    }
}

impl Sampler for DpmSde {
    fn name(&self) -> SamplerName {
        SamplerName::DPM_PLUS_PLUS_SDE_KARRAS
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
        self.midpoint = None;
    }

    fn scale_model_input(&self, sample: &Tensor, call: usize) -> Result<Tensor> {
        let index = self.cursor.index(call, self.timesteps.len())?;
        let sigma = match &self.midpoint {
            Some(mid) => mid.sigma,
            None => self.sigmas[index] as f32,
        };
        Ok(sample.affine(1.0 / (sigma * sigma + 1.0).sqrt(), 0.0)?)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        call: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let k = self.cursor.advance(call, self.timesteps.len())?;
        let first = self.midpoint.is_none();
        let (sigma, sigma_next) = if first {
            (self.sigmas[k] as f32, self.sigmas[k + 1] as f32)
        } else {
            (self.sigmas[k - 1] as f32, self.sigmas[k] as f32)
        };
        let (t, t_next) = (t_of(sigma), t_of(sigma_next));
        let t_mid = t + (t_next - t) * 0.5;
        let sigma_input = if first { sigma } else { sigma_of(t_mid) };
        if sigma_next == 0.0 {
            let derivative = k_derivative(self.prediction, sample, model_output, sigma as f64)?;
            return axpby(sample, 1.0, &derivative, -(sigma as f64));
        }
        // Data prediction x0 at sigma_input.
        let x0 = match self.prediction {
            PredictionType::Epsilon => axpby(sample, 1.0, model_output, -(sigma_input as f64))?,
            PredictionType::VPrediction => {
                let s2 = sigma_input * sigma_input + 1.0;
                axpby(model_output, (-sigma_input / s2.sqrt()) as f64, sample, (1.0 / s2) as f64)?
            }
        };
        let (start, t_to) = match self.midpoint.take() {
            None => (sample.clone(), t_mid),
            Some(mid) => (mid.sample, t_next),
        };
        let (sigma_from, sigma_to) = (sigma_of(t), sigma_of(t_to));
        let up = sigma_to.min(
            (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
                / (sigma_from * sigma_from))
                .sqrt(),
        );
        let down = (sigma_to * sigma_to - up * up).sqrt();
        let t_ancestral = t_of(down);
        let c_x = sigma_of(t_ancestral) / sigma_of(t);
        let c_x0 = -(t - t_ancestral).exp_m1();
        let prev = axpby(&start, c_x as f64, &x0, c_x0 as f64)?;
        let z = noise.brownian(
            sample.dims(),
            self.span,
            [sigma_from, sigma_to],
            sample.dtype(),
            sample.device(),
        )?;
        let prev = axpby(&prev, 1.0, &z, up as f64)?;
        if first {
            self.midpoint = Some(Midpoint { sample: start, sigma: sigma_of(t_mid) });
        }
        Ok(prev)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, call: usize) -> Result<Tensor> {
        let sigma = self.sigmas[self.cursor.index(call, self.timesteps.len())?];
        axpby(original, 1.0, noise, sigma)
    }
}
