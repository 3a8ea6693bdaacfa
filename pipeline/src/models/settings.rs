//! `NAME.json` beside a checkpoint (`checkpoints/NAME.safetensors` or the folder
//! `checkpoints/NAME`): what its weights cannot say. Distilled models need it: SDXL-Lightning and
//! Turbo-style checkpoints sample on `trailing` timesteps at a few steps without guidance, and
//! v-prediction fine-tunes predict velocity.
//!
//! ```json
//! {"timestep_spacing": "trailing", "sampler": "K_EULER", "steps": 4, "cfg_scale": 1.0}
//! ```
//!
//! `timestep_spacing` and `prediction_type` override the checkpoint's scheduler configuration;
//! `sampler`, `steps` and `cfg_scale` are the defaults of requests that leave those fields out
//! (a request's own value always wins). Every key is optional; an unknown key or a value the
//! request schema would refuse is an error naming the file and the key.

use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::CheckpointError;
use serde_json::Value;

use crate::samplers::{PredictionType, SamplerError, SamplerName, SchedulerConfig, TimestepSpacing};

/// Request defaults a checkpoint's `NAME.json` sets.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RequestDefaults {
    /// The sampler of requests without `sampler`.
    pub sampler: Option<SamplerName>,
    /// The steps of requests without `steps`.
    pub steps: Option<usize>,
    /// The guidance scale of requests without `cfg_scale`.
    pub cfg_scale: Option<f64>,
}

/// What a checkpoint's `NAME.json` says (all empty without one).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CheckpointSettings {
    /// Overrides the scheduler configuration's `timestep_spacing`.
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Overrides the scheduler configuration's `prediction_type`.
    pub prediction_type: Option<PredictionType>,
    /// Defaults for requests.
    pub defaults: RequestDefaults,
}

/// The keys a settings file may hold.
const KEYS: [&str; 5] = ["timestep_spacing", "prediction_type", "sampler", "steps", "cfg_scale"];

impl CheckpointSettings {
    /// The settings file of the checkpoint at `checkpoint`: `NAME.json` for `NAME.safetensors`
    /// or the folder `NAME`.
    pub fn path_beside(checkpoint: &Path) -> PathBuf {
        let mut name = checkpoint.file_name().unwrap_or_default().to_os_string();
        if checkpoint.extension().is_some_and(|e| e == "safetensors") {
            name = checkpoint.file_stem().unwrap_or_default().to_os_string();
        }
        name.push(".json");
        checkpoint.with_file_name(name)
    }

    /// Reads the settings beside `checkpoint`; none without a file.
    pub fn beside(checkpoint: &Path) -> Result<CheckpointSettings, CheckpointError> {
        let path = Self::path_beside(checkpoint);
        if !path.exists() {
            return Ok(CheckpointSettings::default());
        }
        let error = |reason: String| CheckpointError::Config { path: path.clone(), reason };
        let text = kiln_runtime::files::read_regular_to_string(&path).map_err(|e| error(e.to_string()))?;
        Self::parse(&text).map_err(error)
    }

    /// Parses a settings file's text; an error names the key at fault.
    pub fn parse(text: &str) -> Result<CheckpointSettings, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(map) = value else { return Err("expected a JSON object of settings".into()) };
        if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!("{key}: unknown setting (known: {})", KEYS.join(", ")));
        }
        let text = |key: &str| match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("{key}: {other} is not a string")),
        };
        let number = |key: &str| match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| format!("{key}: {v} is not a number")),
        };
        let steps = match number("steps")? {
            Some(s) if !(s.fract() == 0.0 && (1.0..=200.0).contains(&s)) => {
                return Err(format!("steps: {s} is not a whole number in 1 ..= 200"));
            }
            s => s.map(|s| s as usize),
        };
        let cfg_scale = number("cfg_scale")?;
        if let Some(c) = cfg_scale.filter(|c| !(*c > 0.0 && *c <= 50.0)) {
            return Err(format!("cfg_scale: {c} is outside (0, 50]"));
        }
        let named = |e: SamplerError| e.to_string();
        Ok(CheckpointSettings {
            timestep_spacing: text("timestep_spacing")?
                .map(TimestepSpacing::parse)
                .transpose()
                .map_err(named)?,
            prediction_type: text("prediction_type")?
                .map(PredictionType::parse)
                .transpose()
                .map_err(named)?,
            defaults: RequestDefaults {
                sampler: text("sampler")?
                    .map(|s| s.parse::<SamplerName>().map_err(|e| format!("sampler: {e}")))
                    .transpose()?,
                steps,
                cfg_scale,
            },
        })
    }

    /// `scheduler` with this file's overrides.
    pub fn apply(&self, mut scheduler: SchedulerConfig) -> SchedulerConfig {
        if let Some(spacing) = self.timestep_spacing {
            scheduler.timestep_spacing = Some(spacing);
        }
        if let Some(prediction) = self.prediction_type {
            scheduler.prediction_type = prediction;
        }
        scheduler
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sits_beside_single_files_and_folders() {
        let beside = |p: &str| CheckpointSettings::path_beside(Path::new(p));
        assert_eq!(beside("a/checkpoints/lightning.safetensors"), Path::new("a/checkpoints/lightning.json"));
        assert_eq!(beside("a/checkpoints/juggernaut"), Path::new("a/checkpoints/juggernaut.json"));
        assert_eq!(beside("a/checkpoints/v1.5-pruned"), Path::new("a/checkpoints/v1.5-pruned.json"));
    }

    #[test]
    fn a_lightning_file_sets_the_schedule_and_the_defaults() {
        let s = CheckpointSettings::parse(
            r#"{"timestep_spacing": "trailing", "sampler": "K_EULER", "steps": 4, "cfg_scale": 1.0}"#,
        )
        .unwrap();
        assert_eq!(s.timestep_spacing, Some(TimestepSpacing::Trailing));
        assert_eq!(
            s.defaults,
            RequestDefaults { sampler: Some(SamplerName::K_EULER), steps: Some(4), cfg_scale: Some(1.0) }
        );
        let scheduler = s.apply(SchedulerConfig::sdxl());
        assert_eq!(scheduler.timestep_spacing, Some(TimestepSpacing::Trailing));
        assert_eq!(scheduler.prediction_type, PredictionType::Epsilon);
        let v = CheckpointSettings::parse(r#"{"prediction_type": "v_prediction"}"#).unwrap();
        assert_eq!(v.apply(SchedulerConfig::sd15()).prediction_type, PredictionType::VPrediction);
        assert_eq!(CheckpointSettings::parse("{}").unwrap(), CheckpointSettings::default());
    }

    #[test]
    fn bad_files_name_the_key() {
        for (text, says) in [
            (r#"{"timestep_spacing": "sideways"}"#, "timestep_spacing"),
            (r#"{"steps": 0}"#, "steps"),
            (r#"{"steps": 4.5}"#, "steps"),
            (r#"{"cfg_scale": 0}"#, "cfg_scale"),
            (r#"{"sampler": "EULER_FAST"}"#, "sampler"),
            (r#"{"timestep_spacin": "trailing"}"#, "timestep_spacin"),
            (r#"{"prediction_type": "sample"}"#, "prediction_type"),
            ("[1]", "JSON object"),
            (r#"{"cfg_scale": "7"}"#, "cfg_scale"),
        ] {
            let err = CheckpointSettings::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
