//! Reading a diffusers folder's `config.json` files. Missing fields take the defaults of the
//! diffusers / transformers class (`UNet2DConditionModel`, `AutoencoderKL`, `CLIPTextConfig`),
//! as `from_pretrained` would; a field of the wrong type is a typed error naming it.

use std::path::Path;

use serde_json::{Map, Value};

use super::{ImageEncoderConfig, TextEncoderConfig, UNetConfig, VaeConfig};
use crate::checkpoint::error::CheckpointError;
use crate::checkpoint::family::Family;

type Object = Map<String, Value>;

/// Reads and parses a JSON object from `path`.
pub fn read_object(path: &Path) -> Result<Object, CheckpointError> {
    let text = crate::files::read_regular_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CheckpointError::NotFound { path: path.into() },
        _ => CheckpointError::Io { path: path.into(), source },
    })?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(config_error(path, "is not a JSON object".into())),
        Err(e) => Err(config_error(path, format!("is not valid JSON: {e}"))),
    }
}

fn config_error(path: &Path, reason: String) -> CheckpointError {
    CheckpointError::Config { path: path.into(), reason }
}

/// Typed access to one config object, with errors naming the file and field.
struct Fields<'a> {
    path: &'a Path,
    o: &'a Object,
}

impl Fields<'_> {
    fn err(&self, key: &str, expected: &str) -> CheckpointError {
        let found = self.o.get(key).map(|v| v.to_string()).unwrap_or_default();
        config_error(self.path, format!("`{key}` must be {expected}, found {found}"))
    }

    /// The value, treating JSON `null` as absent.
    fn get(&self, key: &str) -> Option<&Value> {
        self.o.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str, default: usize) -> Result<usize, CheckpointError> {
        self.opt_usize(key).map(|v| v.unwrap_or(default))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>, CheckpointError> {
        self.get(key)
            .map(|v| v.as_u64().map(|n| n as usize).ok_or_else(|| self.err(key, "a non-negative integer")))
            .transpose()
    }

    fn f64(&self, key: &str, default: f64) -> Result<f64, CheckpointError> {
        self.opt_f64(key).map(|v| v.unwrap_or(default))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>, CheckpointError> {
        self.get(key).map(|v| v.as_f64().ok_or_else(|| self.err(key, "a number"))).transpose()
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, CheckpointError> {
        self.get(key).map_or(Ok(default), |v| v.as_bool().ok_or_else(|| self.err(key, "true or false")))
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, CheckpointError> {
        self.get(key)
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| self.err(key, "a string")))
            .transpose()
    }

    fn strings(&self, key: &str, default: &[&str]) -> Result<Vec<String>, CheckpointError> {
        match self.get(key) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| self.err(key, "a list of strings")))
                .collect(),
            Some(_) => Err(self.err(key, "a list of strings")),
        }
    }

    /// An integer or a list of integers; an integer is repeated `levels` times.
    fn per_level(&self, key: &str, levels: usize) -> Result<Option<Vec<usize>>, CheckpointError> {
        let expected = format!("an integer or a list of {levels} integers");
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => {
                let v: Option<Vec<usize>> = a.iter().map(|x| x.as_u64().map(|n| n as usize)).collect();
                match v {
                    Some(v) if v.len() == levels => Ok(Some(v)),
                    _ => Err(self.err(key, &expected)),
                }
            }
            Some(v) => {
                v.as_u64().map(|n| Some(vec![n as usize; levels])).ok_or_else(|| self.err(key, &expected))
            }
        }
    }

    /// Transformer depths per down level: an integer for all, a list with one per level, or
    /// (as diffusers allows) a list of per-block lists, each of which must be uniform.
    fn depths_per_level(&self, key: &str, levels: usize) -> Result<Option<Vec<usize>>, CheckpointError> {
        let Some(Value::Array(a)) = self.get(key) else { return self.per_level(key, levels) };
        let expected = format!("an integer or a list of {levels} integers (or of {levels} uniform lists)");
        let depth = |v: &Value| match v {
            Value::Array(block) => {
                let d: Option<Vec<u64>> = block.iter().map(Value::as_u64).collect();
                match d.as_deref() {
                    Some([first, rest @ ..]) if rest.iter().all(|x| x == first) => Some(*first as usize),
                    _ => None,
                }
            }
            v => v.as_u64().map(|n| n as usize),
        };
        match a.iter().map(depth).collect::<Option<Vec<usize>>>() {
            Some(v) if v.len() == levels => Ok(Some(v)),
            _ => Err(self.err(key, &expected)),
        }
    }

    /// diffusers' `reverse_transformer_layers_per_block`: a list per up block of per-attention
    /// depths, or absent.
    fn up_depths(
        &self,
        key: &str,
        levels: usize,
        per_block: usize,
    ) -> Result<Option<Vec<Vec<usize>>>, CheckpointError> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let expected = format!("a list of {levels} lists of {per_block} integers");
        let Value::Array(blocks) = value else { return Err(self.err(key, &expected)) };
        let parsed: Option<Vec<Vec<usize>>> = blocks
            .iter()
            .map(|b| match b {
                Value::Array(d) => d.iter().map(|x| x.as_u64().map(|n| n as usize)).collect(),
                _ => None,
            })
            .collect();
        match parsed {
            Some(v) if v.len() == levels && v.iter().all(|b| b.len() == per_block) => Ok(Some(v)),
            _ => Err(self.err(key, &expected)),
        }
    }

    /// An integer, or a list whose entries are all equal (diffusers allows per-block lists).
    fn uniform(&self, key: &str, default: usize) -> Result<usize, CheckpointError> {
        match self.get(key) {
            Some(Value::Array(a)) => {
                let v: Option<Vec<u64>> = a.iter().map(Value::as_u64).collect();
                match v.as_deref() {
                    Some([first, rest @ ..]) if rest.iter().all(|x| x == first) => Ok(*first as usize),
                    _ => Err(self.err(key, "an integer (per-block values that differ are not supported)")),
                }
            }
            _ => self.usize(key, default),
        }
    }
}

/// Parses a diffusers `unet/config.json`. `family` supplies only `sample_size` when absent
/// (diffusers has no default for it).
pub fn unet(path: &Path, o: &Object, family: Family) -> Result<UNetConfig, CheckpointError> {
    let f = Fields { path, o };
    let block_out_channels = match f.get("block_out_channels") {
        None => vec![320, 640, 1280, 1280],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_u64().map(|n| n as usize))
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| f.err("block_out_channels", "a non-empty list of integers"))?,
        Some(_) => return Err(f.err("block_out_channels", "a non-empty list of integers")),
    };
    let levels = block_out_channels.len();
    // diffusers' long-standing naming quirk: `attention_head_dim` is the head count when
    // `num_attention_heads` is absent.
    let num_attention_heads = match f.per_level("num_attention_heads", levels)? {
        Some(h) => h,
        None => f.per_level("attention_head_dim", levels)?.unwrap_or(vec![8; levels]),
    };
    let sample_size = match f.get("sample_size") {
        Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|n| n as usize),
        Some(v) => v.as_u64().map(|n| n as usize),
        None => Some(UNetConfig::published(family).sample_size),
    }
    .ok_or_else(|| f.err("sample_size", "an integer or a list of integers"))?;
    let mid_block_type = match o.get("mid_block_type") {
        None => Some("UNetMidBlock2DCrossAttn".to_string()),
        Some(Value::Null) => None,
        Some(_) => f.opt_string("mid_block_type")?,
    };
    let layers_per_block = f.uniform("layers_per_block", 2)?;
    let mut config = UNetConfig {
        sample_size,
        in_channels: f.usize("in_channels", 4)?,
        out_channels: f.usize("out_channels", 4)?,
        down_block_types: f.strings(
            "down_block_types",
            &["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        )?,
        up_block_types: f.strings(
            "up_block_types",
            &["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        )?,
        mid_block_type,
        layers_per_block,
        transformer_layers_per_block: f
            .depths_per_level("transformer_layers_per_block", levels)?
            .unwrap_or(vec![1; levels]),
        reverse_transformer_layers_per_block: f.up_depths(
            "reverse_transformer_layers_per_block",
            levels,
            layers_per_block + 1,
        )?,
        cross_attention_dim: f.uniform("cross_attention_dim", 1280)?,
        num_attention_heads,
        block_out_channels,
        use_linear_projection: f.bool("use_linear_projection", false)?,
        upcast_attention: f.bool("upcast_attention", false)?,
        addition_embed_type: f.opt_string("addition_embed_type")?,
        addition_time_embed_dim: f.opt_usize("addition_time_embed_dim")?,
        projection_class_embeddings_input_dim: f.opt_usize("projection_class_embeddings_input_dim")?,
        norm_num_groups: f.usize("norm_num_groups", 32)?,
        norm_eps: f.f64("norm_eps", 1e-5)?,
        flip_sin_to_cos: f.bool("flip_sin_to_cos", true)?,
        freq_shift: f.f64("freq_shift", 0.0)?,
        act_fn: f.opt_string("act_fn")?.unwrap_or_else(|| "silu".into()),
    };
    config.normalize_up_depths();
    Ok(config)
}

/// Parses a diffusers `vae/config.json`.
pub fn vae(path: &Path, o: &Object) -> Result<VaeConfig, CheckpointError> {
    let f = Fields { path, o };
    let block_out_channels = match f.get("block_out_channels") {
        None => vec![64],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_u64().map(|n| n as usize))
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| f.err("block_out_channels", "a non-empty list of integers"))?,
        Some(_) => return Err(f.err("block_out_channels", "a non-empty list of integers")),
    };
    let sample_size = match f.get("sample_size") {
        Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|n| n as usize),
        Some(v) => v.as_u64().map(|n| n as usize),
        None => Some(32),
    }
    .ok_or_else(|| f.err("sample_size", "an integer or a list of integers"))?;
    Ok(VaeConfig {
        in_channels: f.usize("in_channels", 3)?,
        out_channels: f.usize("out_channels", 3)?,
        latent_channels: f.usize("latent_channels", 4)?,
        layers_per_block: f.usize("layers_per_block", 1)?,
        down_block_types: f.strings("down_block_types", &["DownEncoderBlock2D"])?,
        up_block_types: f.strings("up_block_types", &["UpDecoderBlock2D"])?,
        block_out_channels,
        norm_num_groups: f.usize("norm_num_groups", 32)?,
        sample_size,
        scaling_factor: f.f64("scaling_factor", 0.18215)?,
        shift_factor: f.opt_f64("shift_factor")?,
        force_upcast: f.bool("force_upcast", true)?,
        use_quant_conv: f.bool("use_quant_conv", true)?,
        use_post_quant_conv: f.bool("use_post_quant_conv", true)?,
        act_fn: f.opt_string("act_fn")?.unwrap_or_else(|| "silu".into()),
    })
}

/// Parses a transformers CLIP text `config.json` (flat, or nested under `text_config`).
/// `has_projection` says whether the weights hold a `text_projection`.
pub fn text_encoder(
    path: &Path,
    o: &Object,
    has_projection: bool,
) -> Result<TextEncoderConfig, CheckpointError> {
    let o = match o.get("text_config") {
        Some(Value::Object(inner)) if !o.contains_key("hidden_size") => inner,
        _ => o,
    };
    let f = Fields { path, o };
    Ok(TextEncoderConfig {
        vocab_size: f.usize("vocab_size", 49408)?,
        hidden_size: f.usize("hidden_size", 512)?,
        intermediate_size: f.usize("intermediate_size", 2048)?,
        num_hidden_layers: f.usize("num_hidden_layers", 12)?,
        num_attention_heads: f.usize("num_attention_heads", 8)?,
        max_position_embeddings: f.usize("max_position_embeddings", 77)?,
        hidden_act: f.opt_string("hidden_act")?.unwrap_or_else(|| "quick_gelu".into()),
        layer_norm_eps: f.f64("layer_norm_eps", 1e-5)?,
        projection_dim: if has_projection { Some(f.usize("projection_dim", 512)?) } else { None },
    })
}

/// Parses a transformers `CLIPVisionConfig` (`image_encoder/config.json`; a `vision_config` inside a
/// whole CLIP config is read too).
pub fn image_encoder(path: &Path, o: &Object) -> Result<ImageEncoderConfig, CheckpointError> {
    let o = match o.get("vision_config") {
        Some(Value::Object(inner)) if !o.contains_key("hidden_size") => inner,
        _ => o,
    };
    let f = Fields { path, o };
    Ok(ImageEncoderConfig {
        hidden_size: f.usize("hidden_size", 768)?,
        intermediate_size: f.usize("intermediate_size", 3072)?,
        num_hidden_layers: f.usize("num_hidden_layers", 12)?,
        num_attention_heads: f.usize("num_attention_heads", 12)?,
        hidden_act: f.opt_string("hidden_act")?.unwrap_or_else(|| "quick_gelu".into()),
        layer_norm_eps: f.f64("layer_norm_eps", 1e-5)?,
        projection_dim: f.usize("projection_dim", 512)?,
        image_size: f.usize("image_size", 224)?,
        patch_size: f.usize("patch_size", 32)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Object {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn attention_head_dim_means_heads_and_ints_expand_per_level() {
        let o = object(
            r#"{"block_out_channels": [320, 640, 1280], "attention_head_dim": [5, 10, 20],
                "transformer_layers_per_block": [1, 2, 10], "cross_attention_dim": 2048,
                "layers_per_block": 2, "use_linear_projection": true, "sample_size": 128}"#,
        );
        let c = unet(Path::new("unet/config.json"), &o, Family::SdxlBase).unwrap();
        assert_eq!(c.num_attention_heads, [5, 10, 20]);
        assert_eq!(c.head_dim(2), 64);
        assert_eq!(c.mid_transformer_layers(), 10);
        let o = object(
            r#"{"block_out_channels": [32, 64], "attention_head_dim": 8, "transformer_layers_per_block": 1}"#,
        );
        let c = unet(Path::new("unet/config.json"), &o, Family::Sd15).unwrap();
        assert_eq!(
            (c.num_attention_heads.as_slice(), c.transformer_layers_per_block.as_slice()),
            (&[8, 8][..], &[1, 1][..])
        );
    }

    #[test]
    fn uneven_up_depths_are_kept_and_even_ones_normalized_away() {
        let ssd = r#"{"block_out_channels": [320, 640, 1280], "layers_per_block": 2,
            "transformer_layers_per_block": [[1, 1], [2, 2], [4, 4]],
            "reverse_transformer_layers_per_block": [[4, 4, 10], [2, 1, 1], [1, 1, 1]],
            "mid_block_type": "UNetMidBlock2D"}"#;
        let c = unet(Path::new("unet/config.json"), &object(ssd), Family::Ssd1b).unwrap();
        assert_eq!(c.transformer_layers_per_block, [1, 2, 4]);
        assert_eq!((c.up_transformer_layers(0), c.up_transformer_layers(1)), (vec![4, 4, 10], vec![2, 1, 1]));
        assert_eq!(c.mid_block_type.as_deref(), Some("UNetMidBlock2D"));
        let even = r#"{"block_out_channels": [32, 64], "layers_per_block": 1,
            "transformer_layers_per_block": [1, 3], "reverse_transformer_layers_per_block": [[3, 3], [1, 1]]}"#;
        let c = unet(Path::new("unet/config.json"), &object(even), Family::Sd15).unwrap();
        assert_eq!(c.reverse_transformer_layers_per_block, None);
        assert_eq!(c.up_transformer_layers(0), [3, 3]);
        for bad in [
            r#"{"block_out_channels": [32, 64], "transformer_layers_per_block": [[1, 2], [1, 1]]}"#,
            r#"{"block_out_channels": [32, 64], "reverse_transformer_layers_per_block": [[1, 1, 1]]}"#,
            r#"{"block_out_channels": [32, 64], "reverse_transformer_layers_per_block": 2}"#,
        ] {
            let e = unet(Path::new("unet/config.json"), &object(bad), Family::Sd15).unwrap_err().to_string();
            assert!(e.contains("transformer_layers_per_block"), "{e}");
        }
    }

    #[test]
    fn wrong_types_name_the_field_and_file() {
        let o = object(r#"{"block_out_channels": [320, 640], "layers_per_block": "two"}"#);
        let e = unet(Path::new("/m/unet/config.json"), &o, Family::Sd15).unwrap_err().to_string();
        assert!(
            e.contains("/m/unet/config.json") && e.contains("`layers_per_block`") && e.contains("\"two\""),
            "{e}"
        );
        let o = object(r#"{"block_out_channels": [320, 640], "transformer_layers_per_block": [1, 2, 3]}"#);
        let e = unet(Path::new("u.json"), &o, Family::Sd15).unwrap_err().to_string();
        assert!(e.contains("a list of 2 integers"), "{e}");
    }

    #[test]
    fn clip_defaults_and_nesting() {
        let o =
            object(r#"{"text_config": {"hidden_size": 1280, "hidden_act": "gelu", "projection_dim": 1280}}"#);
        let c = text_encoder(Path::new("c.json"), &o, true).unwrap();
        assert_eq!((c.hidden_size, c.hidden_act.as_str(), c.projection_dim), (1280, "gelu", Some(1280)));
        let c = text_encoder(Path::new("c.json"), &object("{}"), false).unwrap();
        assert_eq!((c.hidden_size, c.projection_dim), (512, None));
    }
}
