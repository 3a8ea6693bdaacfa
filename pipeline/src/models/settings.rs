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
use serde::Deserialize;

use crate::samplers::{PredictionType, SamplerName, SchedulerConfig, TimestepSpacing};

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

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    timestep_spacing: Option<String>,
    prediction_type: Option<String>,
    sampler: Option<String>,
    steps: Option<u32>,
    cfg_scale: Option<f64>,
}

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

    /// Parses a settings file's text.
    pub fn parse(text: &str) -> Result<CheckpointSettings, String> {
        let file: SettingsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let sampler_error = |e: String| format!("sampler: {e}");
        let steps = match file.steps {
            Some(s) if !(1..=200).contains(&s) => return Err(format!("steps: {s} is outside 1 ..= 200")),
            s => s.map(|s| s as usize),
        };
        if let Some(c) = file.cfg_scale.filter(|c| !(*c > 0.0 && *c <= 50.0)) {
            return Err(format!("cfg_scale: {c} is outside (0, 50]"));
        }
        Ok(CheckpointSettings {
            timestep_spacing: file
                .timestep_spacing
                .as_deref()
                .map(TimestepSpacing::parse)
                .transpose()
                .map_err(|e| e.to_string())?,
            prediction_type: file
                .prediction_type
                .as_deref()
                .map(PredictionType::parse)
                .transpose()
                .map_err(|e| e.to_string())?,
            defaults: RequestDefaults {
                sampler: file
                    .sampler
                    .map(|s| s.parse::<SamplerName>().map_err(|e| sampler_error(e.to_string())))
                    .transpose()?,
                steps,
                cfg_scale: file.cfg_scale,
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
            ("[1]", "expected struct"),
        ] {
            let err = CheckpointSettings::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
