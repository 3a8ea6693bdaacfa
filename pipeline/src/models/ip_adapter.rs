//! IP-Adapter weights as the published files hold them (`ip-adapter_sdxl.safetensors`,
//! `ip-adapter_sdxl_vit-h.safetensors`, `ip-adapter_sd15.safetensors`): the image projection
//! `image_proj.proj` (CLIP `image_embeds [P]` -> 4 tokens of the UNet's context width C) and
//! `image_proj.norm` (a layer norm over each token), and for every cross-attention of the UNet,
//! in diffusers' processor order (down blocks, up blocks, mid block), the bias-free
//! `ip_adapter.{2 i + 1}.to_k_ip` / `to_v_ip` (`[width, C]`) its decoupled attention reads the
//! tokens through. "Plus" adapters (a Resampler over the encoder's hidden states:
//! `image_proj.latents`) are refused for now.

use std::path::{Path, PathBuf};

use kiln_runtime::checkpoint::SafetensorsFile;
use kiln_runtime::{DType, Device, Tensor};

use super::nn::{LayerNorm, Linear};
use super::{ModelError, Result};

/// Image tokens per image of a plain adapter (diffusers hard-codes 4).
const TOKENS: usize = 4;

/// A loaded IP-Adapter.
#[derive(Clone, Debug)]
pub struct IpAdapter {
    path: PathBuf,
    proj: Linear,
    norm: LayerNorm,
    /// The UNet's context width (768 SD 1.5, 2048 SDXL).
    context: usize,
    /// The CLIP `image_embeds` width it takes (1024 ViT-H, 1280 ViT-bigG).
    embed_dim: usize,
    /// Per cross-attention, in processor order: `to_k_ip`, `to_v_ip`.
    pub(crate) layers: Vec<(Linear, Linear)>,
}

impl IpAdapter {
    /// Reads `path` as `dtype` onto `device`.
    pub fn load(path: &Path, dtype: DType, device: Device) -> Result<IpAdapter> {
        let file = SafetensorsFile::open(path)?;
        let bad = |message: String| ModelError::input("ip adapter", format!("{}: {message}", path.display()));
        let has = |prefix: &str| file.tensors().any(|t| t.name().starts_with(prefix));
        if !has("image_proj.") || !has("ip_adapter.") {
            return Err(bad("not an IP-Adapter: it needs image_proj.* and ip_adapter.* tensors".into()));
        }
        if has("image_proj.latents") {
            return Err(bad(
                "a \"plus\" adapter (a Resampler over the image encoder's hidden states): kiln runs \
                            the plain ones (image_proj.proj) for now"
                    .into(),
            ));
        }
        let read = |name: &str| -> Result<Tensor> {
            let view = file.get(name).ok_or_else(|| bad(format!("no tensor `{name}`")))?;
            Ok(view.to_tensor(dtype)?.to_device(device)?)
        };
        let proj_w = read("image_proj.proj.weight")?;
        let &[rows, embed_dim] = proj_w.dims() else {
            return Err(bad(format!("image_proj.proj.weight is {:?}, not a matrix", proj_w.dims())));
        };
        let norm_w = read("image_proj.norm.weight")?;
        let context = norm_w.dims()[0];
        if rows != TOKENS * context {
            return Err(bad(format!(
                "image_proj.proj.weight has {rows} rows: {TOKENS} tokens of the norm's width {context} need {}",
                TOKENS * context
            )));
        }
        let proj = Linear::from_parts(proj_w, Some(read("image_proj.proj.bias")?));
        let norm = LayerNorm::from_parts(norm_w, read("image_proj.norm.bias")?, 1e-5);
        let mut layers = Vec::new();
        while file.get(&format!("ip_adapter.{}.to_k_ip.weight", 2 * layers.len() + 1)).is_some() {
            let n = 2 * layers.len() + 1;
            let k = read(&format!("ip_adapter.{n}.to_k_ip.weight"))?;
            let v = read(&format!("ip_adapter.{n}.to_v_ip.weight"))?;
            if k.dims().get(1) != Some(&context) || k.dims() != v.dims() {
                return Err(bad(format!(
                    "ip_adapter.{n}: to_k_ip {:?} / to_v_ip {:?} do not take {context}-wide tokens",
                    k.dims(),
                    v.dims()
                )));
            }
            layers.push((Linear::from_parts(k, None), Linear::from_parts(v, None)));
        }
        if layers.is_empty() {
            return Err(bad("no ip_adapter.1.to_k_ip.weight: not an IP-Adapter".into()));
        }
        Ok(IpAdapter { path: path.to_path_buf(), proj, norm, context, embed_dim, layers })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The CLIP `image_embeds` width it takes.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    /// The UNet context width it serves.
    pub fn context(&self) -> usize {
        self.context
    }

    /// The cross-attention layers it has weights for.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// Each layer's width (`to_k_ip`'s output).
    pub fn widths(&self) -> Vec<usize> {
        self.layers.iter().map(|(k, _)| k.out_dim()).collect()
    }

    /// `image_embeds [n, P]` -> image tokens `[n, 4, C]` (zero embeddings give the
    /// unconditional tokens, as diffusers' pipelines use).
    pub fn tokens(&self, image_embeds: &Tensor) -> Result<Tensor> {
        let n = image_embeds.dims()[0];
        let t = self.proj.forward(image_embeds)?.reshape(&[n, TOKENS, self.context])?;
        self.norm.forward(&t)
    }
}
