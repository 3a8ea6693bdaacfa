//! Range checks of the config values kiln computes with. A value out of range (a group count
//! that does not divide the channels, a zero or negative epsilon or scaling factor, an activation
//! kiln does not run) is an error when the checkpoint opens, naming the file and field, so that a
//! model that opens can render: without them such a model loaded and then failed every request,
//! or rendered with silently different numbers.

use std::path::Path;

use super::{TextEncoderConfig, UNetConfig, VaeConfig};
use crate::checkpoint::error::CheckpointError;

/// diffusers' `get_activation` names for SiLU, the only activation SD's UNets and VAEs use.
const SILU_NAMES: [&str; 2] = ["silu", "swish"];

/// transformers' CLIP activations kiln runs.
const CLIP_ACTIVATIONS: [&str; 2] = ["quick_gelu", "gelu"];

/// Checks the UNet config `c` read from `path`.
pub fn check_unet(path: &Path, c: &UNetConfig) -> Result<(), CheckpointError> {
    let check = Ranges { path };
    check.groups_divide(c.norm_num_groups, &c.block_out_channels)?;
    check.positive("norm_eps", c.norm_eps)?;
    check.finite("freq_shift", c.freq_shift)?;
    check.nonzero("sample_size", c.sample_size)?;
    check.one_of("act_fn", &c.act_fn, &SILU_NAMES)
}

/// Checks the VAE config `c` read from `path`.
pub fn check_vae(path: &Path, c: &VaeConfig) -> Result<(), CheckpointError> {
    let check = Ranges { path };
    check.groups_divide(c.norm_num_groups, &c.block_out_channels)?;
    check.positive("scaling_factor", c.scaling_factor)?;
    if let Some(shift) = c.shift_factor {
        check.finite("shift_factor", shift)?;
    }
    check.nonzero("sample_size", c.sample_size)?;
    check.one_of("act_fn", &c.act_fn, &SILU_NAMES)
}

/// Checks the image encoder config `c` read from `path`.
pub fn check_image_encoder(path: &Path, c: &super::ImageEncoderConfig) -> Result<(), CheckpointError> {
    let check = Ranges { path };
    check.positive("layer_norm_eps", c.layer_norm_eps)?;
    check.one_of("hidden_act", &c.hidden_act, &CLIP_ACTIVATIONS)
}

/// Checks the text encoder config `c` read from `path`.
pub fn check_text(path: &Path, c: &TextEncoderConfig) -> Result<(), CheckpointError> {
    let check = Ranges { path };
    check.positive("layer_norm_eps", c.layer_norm_eps)?;
    check.one_of("hidden_act", &c.hidden_act, &CLIP_ACTIVATIONS)
}

struct Ranges<'a> {
    path: &'a Path,
}

impl Ranges<'_> {
    fn fail(&self, reason: String) -> CheckpointError {
        CheckpointError::Config { path: self.path.into(), reason }
    }

    fn finite(&self, field: &str, value: f64) -> Result<(), CheckpointError> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(self.fail(format!("`{field}` must be finite, found {value}")))
        }
    }

    fn positive(&self, field: &str, value: f64) -> Result<(), CheckpointError> {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(self.fail(format!("`{field}` must be a finite number above 0, found {value}")))
        }
    }

    fn nonzero(&self, field: &str, value: usize) -> Result<(), CheckpointError> {
        if value > 0 { Ok(()) } else { Err(self.fail(format!("`{field}` must be at least 1, found 0"))) }
    }

    fn one_of(&self, field: &str, value: &str, known: &[&str]) -> Result<(), CheckpointError> {
        if known.contains(&value) {
            Ok(())
        } else {
            Err(self.fail(format!("`{field}` {value:?} is not supported (kiln runs {})", known.join(" or "))))
        }
    }

    /// Every group norm splits its channels into `groups` equal groups.
    fn groups_divide(&self, groups: usize, channels: &[usize]) -> Result<(), CheckpointError> {
        match channels.iter().find(|&&c| groups == 0 || c % groups != 0) {
            None => Ok(()),
            Some(c) => Err(self.fail(format!(
                "`norm_num_groups` {groups} must divide every level's channels, but {c} of \
                 `block_out_channels` {channels:?} does not split into {groups} groups"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::family::Family;

    fn message(result: Result<(), CheckpointError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn published_configs_pass() {
        for family in [Family::Sd15, Family::SdxlBase, Family::SdxlRefiner, Family::Ssd1b] {
            check_unet(Path::new("u"), &UNetConfig::published(family)).unwrap();
            check_vae(Path::new("v"), &VaeConfig::published(family)).unwrap();
        }
        check_text(Path::new("t"), &TextEncoderConfig::clip_l()).unwrap();
        check_text(Path::new("t"), &TextEncoderConfig::open_clip_g()).unwrap();
    }

    #[test]
    fn values_out_of_range_name_the_file_and_field() {
        let path = Path::new("/m/unet/config.json");
        let unet = UNetConfig::published(Family::Sd15);
        let e = message(check_unet(path, &UNetConfig { norm_num_groups: 30, ..unet.clone() }));
        assert!(
            e.contains("/m/unet/config.json") && e.contains("`norm_num_groups` 30") && e.contains("320"),
            "{e}"
        );
        let e = message(check_unet(path, &UNetConfig { norm_num_groups: 0, ..unet.clone() }));
        assert!(e.contains("`norm_num_groups` 0"), "{e}");
        for eps in [0.0, -1e-5, f64::NAN, f64::INFINITY] {
            let e = message(check_unet(path, &UNetConfig { norm_eps: eps, ..unet.clone() }));
            assert!(e.contains("`norm_eps`"), "{e}");
        }
        let e = message(check_unet(path, &UNetConfig { act_fn: "mish".into(), ..unet.clone() }));
        assert!(e.contains("`act_fn` \"mish\""), "{e}");
        check_unet(path, &UNetConfig { act_fn: "swish".into(), ..unet }).unwrap();

        let vae = VaeConfig::published(Family::SdxlBase);
        for scale in [0.0, -0.13025, f64::NAN] {
            let e = message(check_vae(path, &VaeConfig { scaling_factor: scale, ..vae.clone() }));
            assert!(e.contains("`scaling_factor`"), "{e}");
        }
        let e = message(check_vae(path, &VaeConfig { shift_factor: Some(f64::INFINITY), ..vae.clone() }));
        assert!(e.contains("`shift_factor`"), "{e}");
        let e = message(check_vae(path, &VaeConfig { norm_num_groups: 48, ..vae }));
        assert!(e.contains("`norm_num_groups` 48"), "{e}");

        let text = TextEncoderConfig::clip_l();
        let e = message(check_text(path, &TextEncoderConfig { layer_norm_eps: 0.0, ..text.clone() }));
        assert!(e.contains("`layer_norm_eps`"), "{e}");
        let e = message(check_text(path, &TextEncoderConfig { hidden_act: "relu".into(), ..text }));
        assert!(e.contains("`hidden_act` \"relu\""), "{e}");
    }
}
