//! The scheduler configuration of a checkpoint (`scheduler/scheduler_config.json`): the noise
//! schedule the model was trained with and how inference timesteps are spaced.
//!
//! Keys a file leaves out take the default of the diffusers class that reads it, as
//! `Class.from_config` does: `timestep_spacing`, `clip_sample` and `set_alpha_to_one` therefore
//! stay optional here and each sampler applies its class's default.

use std::path::Path;

use kiln_runtime::checkpoint::{Checkpoint, Format};
use serde_json::Value;

use super::SamplerError;

/// How betas grow over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaSchedule {
    /// Betas evenly spaced from `beta_start` to `beta_end`.
    Linear,
    /// Square roots of the betas evenly spaced (Stable Diffusion's schedule).
    ScaledLinear,
}

/// How the inference timesteps are picked among the training timesteps (Table 2 of
/// "Common Diffusion Noise Schedules and Sample Steps are Flawed").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepSpacing {
    /// Evenly spaced over `[0, T - 1]`, both ends included.
    Linspace,
    /// Multiples of `T / steps` from 0, plus `steps_offset`.
    Leading,
    /// Multiples of `T / steps` counted down from `T`, minus one.
    Trailing,
}

impl TimestepSpacing {
    /// The spacing a scheduler config names (`linspace`, `leading`, `trailing`).
    pub fn parse(name: &str) -> Result<Self, SamplerError> {
        match name {
            "linspace" => Ok(TimestepSpacing::Linspace),
            "leading" => Ok(TimestepSpacing::Leading),
            "trailing" => Ok(TimestepSpacing::Trailing),
            other => Err(SamplerError::config("timestep_spacing", format!("{other:?} is not supported"))),
        }
    }
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionType {
    /// The noise (SD 1.5, SDXL).
    Epsilon,
    /// The velocity `alpha * eps - sigma * x0` (SD 2.x 768, some SDXL fine-tunes).
    VPrediction,
}

impl PredictionType {
    /// The prediction type a scheduler config names (`epsilon`, `v_prediction`).
    pub fn parse(name: &str) -> Result<Self, SamplerError> {
        match name {
            "epsilon" => Ok(PredictionType::Epsilon),
            "v_prediction" => Ok(PredictionType::VPrediction),
            other => Err(SamplerError::config("prediction_type", format!("{other:?} is not supported"))),
        }
    }
}

/// The parts of a diffusers scheduler configuration kiln's samplers use.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Number of training timesteps `T`.
    pub num_train_timesteps: usize,
    /// First beta.
    pub beta_start: f64,
    /// Last beta.
    pub beta_end: f64,
    /// How betas go from `beta_start` to `beta_end`.
    pub beta_schedule: BetaSchedule,
    /// Added to `leading` timesteps.
    pub steps_offset: usize,
    /// Timestep spacing, `None` where the file does not say (each class has its own default).
    pub timestep_spacing: Option<TimestepSpacing>,
    /// What the model predicts.
    pub prediction_type: PredictionType,
    /// Whether the file asks for Karras sigmas on samplers that have sigmas.
    pub use_karras_sigmas: bool,
    /// DDIM/DDPM's clipping of the predicted sample, `None` where the file does not say.
    pub clip_sample: Option<bool>,
    /// DDIM's final alpha product of one, `None` where the file does not say.
    pub set_alpha_to_one: Option<bool>,
    /// PNDM without its Runge-Kutta warm-up (PLMS only), `None` where the file does not say.
    pub skip_prk_steps: Option<bool>,
}

/// The most training timesteps a scheduler file may declare. Every published SD model has 1000;
/// the schedule's tables are this long, so an absurd value (`1e12`) is refused at load instead of
/// allocating terabytes when the first request builds its sampler.
pub const MAX_TRAIN_TIMESTEPS: usize = 100_000;

impl SchedulerConfig {
    /// Stable Diffusion 1.5's published scheduler configuration (a `PNDMScheduler` file).
    pub fn sd15() -> Self {
        SchedulerConfig {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            steps_offset: 1,
            timestep_spacing: None,
            prediction_type: PredictionType::Epsilon,
            use_karras_sigmas: false,
            clip_sample: Some(false),
            set_alpha_to_one: Some(false),
            skip_prk_steps: Some(true),
        }
    }

    /// SDXL base's published scheduler configuration (an `EulerDiscreteScheduler` file).
    pub fn sdxl() -> Self {
        SchedulerConfig { timestep_spacing: Some(TimestepSpacing::Leading), ..Self::sd15() }
    }

    /// Reads a `scheduler_config.json` text. Keys kiln does not use are ignored; values kiln
    /// cannot honour (`trained_betas`, `rescale_betas_zero_snr`, other beta schedules) are errors.
    pub fn from_json(text: &str) -> Result<Self, SamplerError> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| SamplerError::config("scheduler_config.json", format!("not JSON: {e}")))?;
        let obj = json
            .as_object()
            .ok_or_else(|| SamplerError::config("scheduler_config.json", "not a JSON object"))?;
        let number = |key: &'static str, default: f64| -> Result<f64, SamplerError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => {
                    v.as_f64().ok_or_else(|| SamplerError::config(key, format!("{v} is not a number")))
                }
            }
        };
        let flag = |key: &'static str| -> Result<Option<bool>, SamplerError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_bool()
                    .map(Some)
                    .ok_or_else(|| SamplerError::config(key, format!("{v} is not a bool"))),
            }
        };
        let text_of = |key: &'static str| -> Result<Option<&str>, SamplerError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(Some)
                    .ok_or_else(|| SamplerError::config(key, format!("{v} is not a string"))),
            }
        };
        let count = |key: &'static str, default: f64| -> Result<usize, SamplerError> {
            let v = number(key, default)?;
            if v < 0.0 || v.fract() != 0.0 {
                return Err(SamplerError::config(key, format!("{v} is not a whole number")));
            }
            Ok(v as usize)
        };
        if obj.get("trained_betas").is_some_and(|v| !v.is_null()) {
            return Err(SamplerError::config("trained_betas", "explicit betas are not supported"));
        }
        if flag("rescale_betas_zero_snr")? == Some(true) {
            return Err(SamplerError::config(
                "rescale_betas_zero_snr",
                "zero-SNR rescaling is not supported",
            ));
        }
        if let Some(kind) = text_of("interpolation_type")? {
            if kind != "linear" {
                return Err(SamplerError::config("interpolation_type", format!("{kind:?} is not supported")));
            }
        }
        let beta_schedule = match text_of("beta_schedule")?.unwrap_or("linear") {
            "linear" => BetaSchedule::Linear,
            "scaled_linear" => BetaSchedule::ScaledLinear,
            other => {
                return Err(SamplerError::config("beta_schedule", format!("{other:?} is not supported")));
            }
        };
        let timestep_spacing = text_of("timestep_spacing")?.map(TimestepSpacing::parse).transpose()?;
        let prediction_type = PredictionType::parse(text_of("prediction_type")?.unwrap_or("epsilon"))?;
        let num_train_timesteps = count("num_train_timesteps", 1000.0)?;
        if !(2..=MAX_TRAIN_TIMESTEPS).contains(&num_train_timesteps) {
            return Err(SamplerError::config(
                "num_train_timesteps",
                format!("{num_train_timesteps} is outside 2 ..= {MAX_TRAIN_TIMESTEPS}"),
            ));
        }
        let steps_offset = count("steps_offset", 0.0)?;
        if steps_offset >= num_train_timesteps {
            return Err(SamplerError::config(
                "steps_offset",
                format!("{steps_offset} must be below num_train_timesteps ({num_train_timesteps})"),
            ));
        }
        let (beta_start, beta_end) = (number("beta_start", 0.0001)?, number("beta_end", 0.02)?);
        for (key, beta) in [("beta_start", beta_start), ("beta_end", beta_end)] {
            if !(beta > 0.0 && beta < 1.0) {
                return Err(SamplerError::config(key, format!("{beta} is outside (0, 1)")));
            }
        }
        if beta_start >= beta_end {
            return Err(SamplerError::config(
                "beta_end",
                format!("{beta_end} must be above beta_start ({beta_start}): betas increase"),
            ));
        }
        Ok(SchedulerConfig {
            num_train_timesteps,
            beta_start,
            beta_end,
            beta_schedule,
            steps_offset,
            timestep_spacing,
            prediction_type,
            use_karras_sigmas: flag("use_karras_sigmas")?.unwrap_or(false),
            clip_sample: flag("clip_sample")?,
            set_alpha_to_one: flag("set_alpha_to_one")?,
            skip_prk_steps: flag("skip_prk_steps")?,
        })
    }

    /// Reads a checkpoint folder's `scheduler/scheduler_config.json` (or any such file).
    pub fn from_file(path: &Path) -> Result<Self, SamplerError> {
        let text = kiln_runtime::files::read_regular_to_string(path)
            .map_err(|e| SamplerError::config("scheduler_config.json", format!("{}: {e}", path.display())))?;
        Self::from_json(&text).map_err(|e| match e {
            SamplerError::Config { key, message } => {
                SamplerError::Config { key, message: format!("{message} (in {})", path.display()) }
            }
            other => other,
        })
    }

    /// The configuration the checkpoint opened from `path` runs with: a diffusers folder's
    /// `scheduler/scheduler_config.json`, else its family's published one.
    pub fn for_checkpoint(ckpt: &Checkpoint, path: &Path) -> Result<Self, SamplerError> {
        let folder_config = path.join("scheduler").join("scheduler_config.json");
        match ckpt.format() {
            Format::Diffusers if folder_config.is_file() => Self::from_file(&folder_config),
            _ if ckpt.family().is_sdxl() => Ok(Self::sdxl()),
            _ => Ok(Self::sd15()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_key(json: &str) -> &'static str {
        match SchedulerConfig::from_json(json) {
            Err(SamplerError::Config { key, .. }) => key,
            other => panic!("{json} gave {other:?}"),
        }
    }

    #[test]
    fn values_out_of_range_are_refused_naming_their_key() {
        assert_eq!(refused_key(r#"{"num_train_timesteps": 1e12}"#), "num_train_timesteps");
        assert_eq!(refused_key(r#"{"num_train_timesteps": 1}"#), "num_train_timesteps");
        assert_eq!(refused_key(r#"{"steps_offset": 1000}"#), "steps_offset");
        assert_eq!(refused_key(r#"{"num_train_timesteps": 50, "steps_offset": 50}"#), "steps_offset");
        assert_eq!(refused_key(r#"{"beta_start": 0}"#), "beta_start");
        assert_eq!(refused_key(r#"{"beta_start": -0.001}"#), "beta_start");
        assert_eq!(refused_key(r#"{"beta_end": 1.0}"#), "beta_end");
        assert_eq!(refused_key(r#"{"beta_start": 0.02, "beta_end": 0.0001}"#), "beta_end");
        assert_eq!(refused_key(r#"{"beta_start": 0.012, "beta_end": 0.012}"#), "beta_end");
    }

    #[test]
    fn values_at_the_edges_of_their_ranges_load() {
        let c = SchedulerConfig::from_json(
            r#"{"num_train_timesteps": 100000, "steps_offset": 99999, "beta_start": 1e-9, "beta_end": 0.999}"#,
        )
        .unwrap();
        assert_eq!((c.num_train_timesteps, c.steps_offset), (MAX_TRAIN_TIMESTEPS, 99_999));
    }
}
