//! ControlNet guidance: attaching a ControlNet to an engine, checking jobs against it, and the
//! per-row inputs a batch gives it (control images, each row's scale per model call).

use std::path::Path;
use std::sync::Arc;

use ::image::RgbImage;
use kiln_runtime::checkpoint::{Checkpoint, Family};
use kiln_runtime::{Device, Tensor};

use super::{Control, Engine, GenerateError, Job, Result};
use crate::models::ModelError;
use crate::models::unet::ControlNet;

impl Engine {
    /// Loads the ControlNet at `path` (a diffusers folder or a single file, see
    /// [`Checkpoint::open_controlnet`]; `config_dir` describes a single file) in this engine's
    /// UNet dtype and device. It is not attached: see [`Engine::set_controlnet`].
    pub fn load_controlnet(&self, path: &Path, config_dir: Option<&Path>) -> Result<ControlNet> {
        let ckpt = Checkpoint::open_controlnet(path, config_dir).map_err(ModelError::Checkpoint)?;
        Ok(ControlNet::load(&ckpt, self.unet.dtype(), self.unet_device())?)
    }

    /// Attaches the ControlNet that guides jobs with [`Job::control`] (or detaches it). It must
    /// serve this engine's family and fit its UNet: the same context width and the same levels,
    /// so that its residuals match the UNet's skip connections.
    pub fn set_controlnet(&mut self, controlnet: Option<Arc<ControlNet>>) -> Result<()> {
        if let Some(net) = &controlnet {
            let (c, u) = (net.config(), self.unet.config());
            let serves = match self.family {
                Family::Sd15 | Family::Sd15Inpaint => net.family() == Family::Sd15,
                Family::SdxlBase | Family::SdxlInpaint | Family::Ssd1b => net.family() == Family::SdxlBase,
                Family::SdxlRefiner => false,
            };
            let fits = c.cross_attention_dim == u.cross_attention_dim
                && c.block_out_channels == u.block_out_channels
                && c.layers_per_block == u.layers_per_block;
            if !serves || !fits {
                return Err(GenerateError::Input {
                    field: "controlnet",
                    message: format!(
                        "the ControlNet is for {} ({}-wide text context, levels {:?}), the model is {} ({}-wide, \
                         levels {:?})",
                        net.family(),
                        c.cross_attention_dim,
                        c.block_out_channels,
                        self.family,
                        u.cross_attention_dim,
                        u.block_out_channels
                    ),
                });
            }
        }
        self.controlnet = controlnet;
        Ok(())
    }

    /// The attached ControlNet, if any.
    pub fn controlnet(&self) -> Option<&Arc<ControlNet>> {
        self.controlnet.as_ref()
    }

    /// A job's control fits: a ControlNet is attached, the image has the job's size, and the
    /// scale and end are in range.
    pub(super) fn check_control(&self, job: &Job) -> Result<()> {
        let Some(control) = &job.control else { return Ok(()) };
        let input = |field, message: String| Err(GenerateError::Input { field, message });
        if self.controlnet.is_none() {
            return input(
                "controlnet",
                "the job asks for a ControlNet, but none is attached to this engine".into(),
            );
        }
        let size = (job.width as u32, job.height as u32);
        if control.image.dimensions() != size {
            return input(
                "controlnet_image",
                format!("is {:?}, the job is {size:?}", control.image.dimensions()),
            );
        }
        if !(control.scale >= 0.0 && control.scale.is_finite()) {
            return input(
                "controlnet_conditioning_scale",
                format!("{} is not a finite number >= 0", control.scale),
            );
        }
        if !(0.0..=1.0).contains(&control.end) {
            return input("controlnet_early_stop", format!("{} is outside [0, 1]", control.end));
        }
        Ok(())
    }
}

/// A batch's ControlNet inputs in the UNet's row order (each slot, then each guided slot again:
/// both guidance halves see the same control image, as diffusers doubles it).
pub(super) struct ControlRows<'a> {
    pub net: Arc<ControlNet>,
    /// `[rows, H, W, 3]`: the control images scaled to [0, 1].
    pub hint: Tensor,
    /// Each row's job's control (its scale and end).
    controls: Vec<&'a Control>,
}

impl<'a> ControlRows<'a> {
    /// The rows' controls (every job of a controlled batch has one) and their images as a tensor.
    pub(super) fn new(
        net: Arc<ControlNet>,
        rows: Vec<&'a Control>,
        device: Device,
    ) -> Result<ControlRows<'a>> {
        let images: Vec<&RgbImage> = rows.iter().map(|c| &c.image).collect();
        let (w, h) = images[0].dimensions();
        let pixels: Vec<f32> =
            images.iter().flat_map(|img| img.as_raw().iter().map(|&v| f32::from(v) / 255.0)).collect();
        let dtype = net.dtype();
        let hint = Tensor::from_f32(pixels, &[rows.len(), h as usize, w as usize, 3], dtype, device)?;
        Ok(ControlRows { net, hint, controls: rows })
    }

    /// Each row's scale at model call `call` of `calls`; `None` when every row's is 0 (the
    /// ControlNet need not run: diffusers runs it and adds its residuals times 0).
    pub(super) fn scales(&self, call: usize, calls: usize) -> Option<Vec<f32>> {
        let scales: Vec<f32> = self.controls.iter().map(|c| c.scale_at(call, calls) as f32).collect();
        scales.iter().any(|&s| s != 0.0).then_some(scales)
    }
}
