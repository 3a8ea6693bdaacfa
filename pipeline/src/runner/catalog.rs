//! `kiln assets DIR`: what each entry of an asset library is, read from headers alone, so a user
//! sees at once which names requests can use and why the others would be refused. Each entry's
//! kind is detected from its tensor names whatever folder it sits in, so a LoRA dropped into
//! `checkpoints/` is called a LoRA.

use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::{Checkpoint, SafetensorsFile};
use serde::Serialize;

use super::assets::AssetKind;
use crate::lora::{LoraFile, is_lora_tensor};
use crate::models::settings::CheckpointSettings;

/// The library's folders, in listing order.
const FOLDERS: [(&str, Option<AssetKind>); 7] = [
    ("checkpoints", Some(AssetKind::Checkpoint)),
    ("loras", Some(AssetKind::Lora)),
    ("embeddings", Some(AssetKind::Embedding)),
    ("vaes", Some(AssetKind::Vae)),
    ("controlnets", Some(AssetKind::ControlNet)),
    ("ip_adapters", Some(AssetKind::IpAdapter)),
    ("image_encoders", Some(AssetKind::ImageEncoder)),
];

/// One entry of the library.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// The folder it is in (`loras`).
    pub folder: &'static str,
    /// The name a request uses (`.safetensors` dropped).
    pub name: String,
    /// The file or folder.
    pub path: PathBuf,
    /// What it is: `checkpoint`, `LoRA`, `LoCon`, `LoHa`, `LoKr`, `textual inversion`, `VAE`, or
    /// `unknown`.
    pub kind: String,
    /// The model family it is for, where its shapes say.
    pub family: Option<String>,
    /// Whether a request naming it can use it today.
    pub usable: bool,
    /// Details, or why it cannot be used.
    pub note: String,
}

/// Every entry of the library at `dir` (hidden files skipped), folder by folder, names sorted.
pub fn list(dir: &Path) -> std::io::Result<Vec<Entry>> {
    std::fs::read_dir(dir)?; // an unreadable library is the caller's error
    let mut entries = Vec::new();
    for (folder, kind) in FOLDERS {
        let Ok(read) = std::fs::read_dir(dir.join(folder)) else { continue };
        let mut paths: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .filter(|p| !is_settings_file(p))
            .collect();
        paths.sort();
        entries.extend(paths.into_iter().map(|path| describe(folder, kind, path)));
    }
    Ok(entries)
}

/// A checkpoint's `NAME.json` (listed with its checkpoint, not as an entry).
fn is_settings_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
        && [path.with_extension("safetensors"), path.with_extension("")].iter().any(|p| p.exists())
}

/// What one entry is, and whether its folder's requests can use it.
fn describe(folder: &'static str, wanted: Option<AssetKind>, path: PathBuf) -> Entry {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = file_name.strip_suffix(".safetensors").unwrap_or(&file_name).to_owned();
    let found = sniff(&path);
    let (kind, family, mut note) = match &found {
        Ok(s) => (s.kind.clone(), s.family.clone(), s.detail.clone()),
        Err(reason) => ("unknown".to_owned(), None, reason.clone()),
    };
    let usable = match (wanted, &found) {
        (None, _) => {
            note = format!("{folder}/ is kept for later: nothing reads it yet ({note})");
            false
        }
        (_, Err(_)) => false,
        (Some(want), Ok(s)) if s.asset != Some(want) => {
            let home = s.asset.map_or("no folder".to_owned(), |k| format!("{}/", k.folder()));
            note = format!("this is a {}, not a {want}: it belongs in {home} ({note})", s.kind);
            false
        }
        (Some(_), Ok(_)) => true,
    };
    Entry { folder, name, path, kind, family, usable, note }
}

/// What a file or folder is.
struct Sniffed {
    asset: Option<AssetKind>,
    kind: String,
    family: Option<String>,
    detail: String,
}

fn sniff(path: &Path) -> Result<Sniffed, String> {
    if path.is_dir() {
        return sniff_folder(path);
    }
    if path.extension().is_none_or(|e| e != "safetensors") {
        return Err(
            "not a .safetensors file or a diffusers folder (kiln reads no pickled .ckpt / .pt files)".into(),
        );
    }
    let file = SafetensorsFile::open(path).map_err(|e| e.to_string())?;
    let names: Vec<&str> = file.tensors().map(|t| t.name()).collect();
    if names.iter().any(|n| n.contains("controlnet_cond_embedding.") || n.contains("input_hint_block.")) {
        return sniff_controlnet(path);
    }
    if names.iter().any(|n| n.starts_with("ip_adapter.")) {
        return Ok(Sniffed {
            asset: Some(AssetKind::IpAdapter),
            kind: "IP-Adapter".into(),
            family: None,
            detail: format!("{} tensors", names.len()),
        });
    }
    if names.iter().any(|n| n.starts_with("vision_model.")) {
        return sniff_image_encoder(path);
    }
    if names.iter().any(|n| n.contains("diffusion_model.") || n.starts_with("unet.") && !is_lora_tensor(n)) {
        return sniff_checkpoint(path);
    }
    if names.iter().any(|n| is_lora_tensor(n)) {
        return sniff_lora(path);
    }
    if let Some(embedding) = sniff_embedding(&file) {
        return Ok(embedding);
    }
    if names.iter().any(|n| n.contains("decoder.conv_in.")) {
        return Ok(Sniffed {
            asset: Some(AssetKind::Vae),
            kind: "VAE".into(),
            family: None,
            detail: "an autoencoder (SD 1.5 and SDXL VAEs have the same shapes: the family cannot be told)"
                .into(),
        });
    }
    Err(format!("none of its {} tensors is named like a checkpoint, LoRA, embedding or VAE", names.len()))
}

fn sniff_folder(path: &Path) -> Result<Sniffed, String> {
    if path.join("model_index.json").is_file() || path.join("unet").is_dir() {
        return sniff_checkpoint(path);
    }
    if path.join("model.safetensors").is_file() && path.join("config.json").is_file() {
        return sniff_image_encoder(path);
    }
    let weights = path.join("diffusion_pytorch_model.safetensors");
    if weights.is_file() {
        return sniff(&weights).and_then(|s| match s.asset {
            Some(AssetKind::ControlNet) => sniff_controlnet(path),
            _ => Ok(s),
        });
    }
    Err("a folder without model_index.json: not a diffusers checkpoint".into())
}

/// A whole model, with the `NAME.json` beside it if any (a bad one makes it unusable).
fn sniff_checkpoint(path: &Path) -> Result<Sniffed, String> {
    let ckpt = Checkpoint::open(path).map_err(|e| e.to_string())?;
    ckpt.require_complete().map_err(|e| e.to_string())?;
    let mut detail = ckpt.format().to_string();
    let settings = CheckpointSettings::path_beside(path);
    if settings.exists() {
        CheckpointSettings::beside(path).map_err(|e| e.to_string())?;
        let name = settings.file_name().unwrap_or_default().to_string_lossy();
        detail.push_str(&format!(", with settings from {name}"));
    }
    Ok(Sniffed {
        asset: Some(AssetKind::Checkpoint),
        kind: "checkpoint".into(),
        family: Some(ckpt.family().to_string()),
        detail,
    })
}

/// A CLIP vision tower (a transformers folder or file).
fn sniff_image_encoder(path: &Path) -> Result<Sniffed, String> {
    let ckpt = Checkpoint::open_image_encoder(path).map_err(|e| e.to_string())?;
    let c = ckpt.image_encoder_config().ok_or("not a CLIP vision tower")?;
    Ok(Sniffed {
        asset: Some(AssetKind::ImageEncoder),
        kind: "image encoder".into(),
        family: None,
        detail: format!(
            "CLIP vision, width {}, {} layers, image embeds {}",
            c.hidden_size, c.num_hidden_layers, c.projection_dim
        ),
    })
}

/// A ControlNet: a folder, a diffusers-named file or one in the original layout.
fn sniff_controlnet(path: &Path) -> Result<Sniffed, String> {
    let ckpt = Checkpoint::open_controlnet(path, None).map_err(|e| e.to_string())?;
    let c = ckpt.unet_config();
    Ok(Sniffed {
        asset: Some(AssetKind::ControlNet),
        kind: "ControlNet".into(),
        family: Some(ckpt.family().to_string()),
        detail: format!("{}, {} levels {:?}", ckpt.format(), c.levels(), c.block_out_channels),
    })
}

fn sniff_lora(path: &Path) -> Result<Sniffed, String> {
    let lora = LoraFile::open(path).map_err(|e| e.to_string())?;
    let summary = lora.summary();
    Ok(Sniffed {
        asset: Some(AssetKind::Lora),
        kind: summary.kind.to_owned(),
        family: summary.family.map(str::to_owned),
        detail: format!("{} modules, {} names", summary.modules, summary.layout),
    })
}

/// Textual inversions: `emb_params` (SD 1.5, A1111's safetensors), `string_to_param.*` (the
/// `.pt` layout saved as safetensors), `clip_l` + `clip_g` (SDXL).
fn sniff_embedding(file: &SafetensorsFile) -> Option<Sniffed> {
    let shape = |name: &str| file.get(name).map(|t| t.shape().to_vec());
    let vectors = |s: &[usize]| if s.len() == 2 { s[0] } else { 1 };
    let sd15 = shape("emb_params").or_else(|| {
        file.tensors().find(|t| t.name().starts_with("string_to_param.")).map(|t| t.shape().to_vec())
    });
    let (family, detail) = match (shape("clip_l"), shape("clip_g"), sd15) {
        (Some(l), Some(_), _) => ("SDXL", format!("{} vectors (clip_l + clip_g)", vectors(&l))),
        (_, _, Some(s)) => {
            let width = s.last().copied().unwrap_or(0);
            let family = if width == 768 { "SD 1.5" } else { "unknown" };
            (family, format!("{} vectors of width {width}", vectors(&s)))
        }
        _ => return None,
    };
    Some(Sniffed {
        asset: Some(AssetKind::Embedding),
        kind: "textual inversion".into(),
        family: (family != "unknown").then(|| family.to_owned()),
        detail,
    })
}
