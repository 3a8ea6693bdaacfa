//! IP-Adapter guidance: an adapter and its CLIP image encoder attached to an engine, jobs
//! checked against them, and the per-batch inputs of the UNet's image attention (each slot's
//! image tokens, the unconditional tokens of zero embeddings for the guidance half, per-layer
//! scales from the job's method, masks), built once per batch.

use std::path::Path;
use std::sync::Arc;

use kiln_runtime::checkpoint::Checkpoint;
use kiln_runtime::{DType, Tensor};

use super::{Engine, GenerateError, IpImage, Job, Result};
use crate::image::clip::normalize;
use crate::models::ModelError;
use crate::models::clip::vision::ClipVisionModel;
use crate::models::ip_adapter::IpAdapter;
use crate::models::unet::IpCall;
use crate::models::unet::ip::mask_values;

/// An IP-Adapter with the CLIP vision tower it reads images with.
#[derive(Debug)]
pub struct IpModels {
    /// The adapter's projection and per-layer weights.
    pub adapter: IpAdapter,
    /// The CLIP vision tower whose `image_embeds` it projects.
    pub encoder: ClipVisionModel,
}

impl Engine {
    /// Loads the IP-Adapter file at `adapter` and the image encoder (a transformers folder or
    /// file, see [`Checkpoint::open_image_encoder`]) at `encoder` in this engine's UNet dtype and
    /// device. Not attached: see [`Engine::set_ip_adapter`].
    pub fn load_ip_adapter(&self, adapter: &Path, encoder: &Path) -> Result<IpModels> {
        let (dtype, device) = (self.unet.dtype(), self.unet_device());
        let adapter = IpAdapter::load(adapter, dtype, device)?;
        let ckpt = Checkpoint::open_image_encoder(encoder).map_err(ModelError::Checkpoint)?;
        let encoder = ClipVisionModel::load(&ckpt, dtype, device)?;
        if encoder.config().projection_dim != adapter.embed_dim() {
            return Err(GenerateError::Input {
                field: "ip_adapter",
                message: format!(
                    "{} takes {}-wide image embeddings, but the image encoder {} gives {} (ViT-H/14 gives 1024, \
                     ViT-bigG/14 1280)",
                    adapter.path().display(),
                    adapter.embed_dim(),
                    ckpt.path().display(),
                    encoder.config().projection_dim
                ),
            });
        }
        Ok(IpModels { adapter, encoder })
    }

    /// Attaches the IP-Adapter that guides jobs with [`Job::ip`] (or detaches it). It must have
    /// weights for each of this UNet's cross-attentions, of their widths, for its context width.
    pub fn set_ip_adapter(&mut self, models: Option<Arc<IpModels>>) -> Result<()> {
        if let Some(m) = &models {
            let want = self.unet.ip_widths();
            let (context, widths) = (m.adapter.context(), m.adapter.widths());
            if context != self.unet.config().cross_attention_dim || widths != want {
                return Err(GenerateError::Input {
                    field: "ip_adapter",
                    message: format!(
                        "{} is for a model with a {context}-wide context and {} cross-attentions; the model is {} \
                         with a {}-wide context and {}",
                        m.adapter.path().display(),
                        widths.len(),
                        self.family,
                        self.unet.config().cross_attention_dim,
                        want.len()
                    ),
                });
            }
        }
        self.ip_adapter = models;
        Ok(())
    }

    /// The attached IP-Adapter, if any.
    pub fn ip_adapter(&self) -> Option<&Arc<IpModels>> {
        self.ip_adapter.as_ref()
    }

    /// A job's IP-Adapter guidance fits: an adapter is attached, the image is the encoder's
    /// size, the mask the job's, the scale a finite number >= 0.
    pub(super) fn check_ip(&self, job: &Job) -> Result<()> {
        let Some(ip) = &job.ip else { return Ok(()) };
        let input = |field, message: String| Err(GenerateError::Input { field, message });
        let Some(models) = &self.ip_adapter else {
            return input(
                "ip_adapter_image",
                "the job asks for an IP-Adapter, but none is attached to this engine".into(),
            );
        };
        let side = models.encoder.config().image_size as u32;
        if ip.image.dimensions() != (side, side) {
            return input(
                "ip_adapter_image",
                format!("is {:?}, the image encoder takes {side} x {side}", ip.image.dimensions()),
            );
        }
        if let Some(mask) = &ip.mask
            && mask.dimensions() != (job.width as u32, job.height as u32)
        {
            return input(
                "ip_adapter_mask_image",
                format!("is {:?}, the job is {}x{}", mask.dimensions(), job.width, job.height),
            );
        }
        if !(ip.scale >= 0.0 && ip.scale.is_finite()) {
            return input("ip_adapter_scale", format!("{} is not a finite number >= 0", ip.scale));
        }
        Ok(())
    }

    /// The UNet's image-attention inputs for rows whose guidance is `rows` (each slot's with its
    /// image, then each guided slot's again with the unconditional tokens: `false`), for a
    /// `latent` (h, w) UNet input and masks of `pixels` (height, width).
    pub(super) fn ip_call(
        &self,
        rows: &[(&IpImage, bool)],
        latent: (usize, usize),
        pixels: (usize, usize),
    ) -> Result<IpCall> {
        let models = self.ip_adapter.as_ref().ok_or_else(|| GenerateError::Input {
            field: "ip_adapter_image",
            message: "no IP-Adapter is attached to this engine".into(),
        })?;
        let (dtype, device) = (self.unet.dtype(), self.unet_device());
        let side = models.encoder.config().image_size;
        // Each distinct image once (jobs repeat theirs for every seed).
        let mut tokens = Vec::with_capacity(rows.len());
        let mut cache: Vec<(&IpImage, Tensor)> = Vec::new();
        let zero =
            models.adapter.tokens(&Tensor::full(0.0, &[1, models.adapter.embed_dim()], dtype, device)?)?;
        for &(ip, conditional) in rows {
            if !conditional {
                tokens.push(zero.clone());
                continue;
            }
            if let Some((_, t)) = cache.iter().find(|(seen, _)| std::ptr::eq(*seen, ip)) {
                tokens.push(t.clone());
                continue;
            }
            let pixels = Tensor::from_f32(normalize(&ip.image), &[1, side, side, 3], DType::F32, device)?;
            let t = models.adapter.tokens(&models.encoder.image_embeds(&pixels)?)?; // [1, 4, C]
            cache.push((ip, t.clone()));
            tokens.push(t);
        }
        let tokens = Tensor::concat(&tokens.iter().collect::<Vec<_>>(), 0)?; // [rows, 4, C]
        let layers = self.unet.ip_layers();
        let scales: Vec<Vec<f32>> = layers
            .iter()
            .map(|attention| {
                rows.iter()
                    .map(|(ip, _)| match ip.method.block() {
                        Some(block) if block != attention => 0.0,
                        _ => ip.scale as f32,
                    })
                    .collect()
            })
            .collect();
        let masks: Option<Vec<Option<Vec<f32>>>> = rows
            .iter()
            .any(|(ip, _)| ip.mask.is_some())
            .then(|| rows.iter().map(|(ip, _)| ip.mask.as_ref().map(mask_values)).collect());
        let levels = self.unet.config().levels();
        let masks = masks.as_ref().map(|m| (m.as_slice(), pixels));
        Ok(IpCall::new(&models.adapter, &tokens, &scales, masks, latent, levels)?)
    }
}
