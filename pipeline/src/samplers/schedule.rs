//! Host-side schedule arithmetic shared by the samplers, following diffusers' dtype choices:
//! the training schedule (`alphas_cumprod`, sigmas) is float32 as torch computes it, the
//! inference schedule is float64 numpy math rounded to float32 where diffusers stores it.

use super::config::{BetaSchedule, SchedulerConfig, TimestepSpacing};

/// Cumulative products of `1 - beta` over the training timesteps, as diffusers' float32
/// tensors hold them: betas from torch's float32 `linspace` (its scalar formula, within one
/// ulp of torch's vectorised one), the product accumulated in float64 as torch's CPU `cumprod`.
pub fn alphas_cumprod(config: &SchedulerConfig) -> Vec<f32> {
    let n = config.num_train_timesteps;
    let betas: Vec<f32> = match config.beta_schedule {
        BetaSchedule::Linear => torch_linspace_f32(config.beta_start, config.beta_end, n),
        BetaSchedule::ScaledLinear => torch_linspace_f32(config.beta_start.sqrt(), config.beta_end.sqrt(), n)
            .into_iter()
            .map(|b| b * b)
            .collect(),
    };
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&beta| {
            acc *= (1.0f32 - beta) as f64;
            acc as f32
        })
        .collect()
}

/// torch's float32 `linspace` (the CPU kernel's scalar formula: from the start for the first
/// half, from the end for the second).
fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| if i < halfway { start + step * i as f32 } else { end - step * (steps - i - 1) as f32 })
        .collect()
}

/// Karras-style sigmas of the training schedule, `sqrt((1 - a) / a)`, in float32.
pub fn training_sigmas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod.iter().map(|&a| ((1.0f32 - a) / a).sqrt()).collect()
}

/// numpy's `linspace(start, stop, num)` in float64 (`i * step + start`, the last set to `stop`).
pub fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut out: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = out.last_mut() {
        *last = stop;
    }
    out
}

/// numpy's `round` (half to even).
pub fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// The `timestep_spacing` timesteps of the k-diffusion style schedulers (Euler, Heun, LMS,
/// DPM2): `steps` values, descending, float32 values held as f64.
pub fn discrete_timesteps(
    spacing: TimestepSpacing,
    train: usize,
    steps: usize,
    steps_offset: usize,
) -> Vec<f64> {
    let out: Vec<f64> = match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (train - 1) as f64, steps).into_iter().rev().collect(),
        TimestepSpacing::Leading => {
            let ratio = train / steps;
            (0..steps).rev().map(|i| (i * ratio) as f64 + steps_offset as f64).collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = train as f64 / steps as f64;
            (0..steps).map(|i| np_round(train as f64 - i as f64 * ratio) - 1.0).collect()
        }
    };
    out.into_iter().map(|t| t as f32 as f64).collect()
}

/// numpy's `interp(x, arange(len(fp)), fp)`: linear interpolation on the integer grid.
pub fn interp(x: f64, fp: &[f32]) -> f64 {
    let last = fp.len() - 1;
    if x <= 0.0 {
        return fp[0] as f64;
    }
    if x >= last as f64 {
        return fp[last] as f64;
    }
    let j = x.floor() as usize;
    let slope = (fp[j + 1] as f64 - fp[j] as f64) / 1.0;
    slope * (x - j as f64) + fp[j] as f64
}

/// Karras et al.'s schedule (rho = 7) from `sigma_max` down to `sigma_min`, `steps` values.
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    np_linspace(0.0, 1.0, steps).into_iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect()
}

/// The (fractional) training timestep whose sigma is `sigma`: linear in log-sigma between the
/// two neighbouring training sigmas, as diffusers' `_sigma_to_t` (`log_sigmas` float32).
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // Index of the last training log-sigma at or below log_sigma (0 if none), at most len - 2.
    let mut low = 0;
    for (i, &ls) in log_sigmas.iter().enumerate() {
        if log_sigma - ls as f64 >= 0.0 {
            low = i;
        }
    }
    let low = low.min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low] as f64, log_sigmas[low + 1] as f64);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// The integer `timestep_spacing` timesteps of DDIM and DDPM: `steps` values, descending.
pub fn integer_timesteps(
    spacing: TimestepSpacing,
    train: usize,
    steps: usize,
    steps_offset: usize,
) -> Vec<f64> {
    match spacing {
        TimestepSpacing::Linspace => {
            np_linspace(0.0, (train - 1) as f64, steps).into_iter().rev().map(np_round).collect()
        }
        TimestepSpacing::Leading => {
            let ratio = train / steps;
            (0..steps).rev().map(|i| (i * ratio + steps_offset) as f64).collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = train as f64 / steps as f64;
            (0..steps).map(|i| np_round(train as f64 - i as f64 * ratio) - 1.0).collect()
        }
    }
}
