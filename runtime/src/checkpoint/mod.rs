//! Safetensors checkpoints: memory-mapped files, layout and family detection, model sizes, and
//! one canonical naming for every tensor.
//!
//! - [`SafetensorsFile`]: one memory-mapped `.safetensors` file; [`TensorView`] a zero-copy view
//!   of one stored tensor (name, stored [`Dtype`], shape, bytes), converted on demand to a
//!   [`crate::Tensor`]. Bad files give typed [`CheckpointError`]s naming the file and the fault.
//! - [`Checkpoint`]: a whole model, from a single file in the original (LDM / sgm) layout or a
//!   diffusers folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `text_encoder_2/`,
//!   sharded and fp16-variant weights included). It detects the [`Format`] and [`Family`]
//!   (SD 1.5, SDXL base and refiner, and the inpainting variants), reads each component's size
//!   ([`UNetConfig`], [`VaeConfig`], [`TextEncoderConfig`]) from config.json or from the weights,
//!   and maps every stored tensor to one canonical name ([`names`]): diffusers' names prefixed by
//!   the component, `unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight`.
//!
//! The single-file naming follows what diffusers' conversion scripts, ComfyUI and
//! stable-diffusion.cpp do (none of their code is used here): LDM's flat `input_blocks` /
//! `output_blocks` numbering unfolded by levels and layers per block, the VAE decoder's reversed
//! levels, the VAE's 1×1-conv attention read as linears, and OpenCLIP's fused q/k/v and
//! transposed projection; see [`names::Transform`].

pub mod config;
mod decode;
mod error;
pub mod family;
mod file;
pub mod header_limits;
mod layout;
pub mod manifest;
mod model;
pub mod names;
mod open;
pub mod write;

use std::fmt;

pub use config::{ComponentConfig, ImageEncoderConfig, TextEncoderConfig, UNetConfig, VaeConfig};
pub use error::{CheckpointError, Warning};
pub use family::Family;
pub use file::{Dtype, SafetensorsFile, TensorView};
pub use layout::{Format, OpenOptions};
pub use model::{CanonicalView, Checkpoint, ComponentInfo, ConfigSource, IgnoredTensor, UnrecognisedTensor};
pub use names::Transform;

/// One model of a pipeline, as diffusers splits it. The canonical name of each of its tensors
/// starts with [`Component::prefix`] and a dot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// The denoising UNet.
    Unet,
    /// The autoencoder.
    Vae,
    /// The first (SD 1.5's only) text encoder: CLIP ViT-L/14.
    TextEncoder,
    /// SDXL's second text encoder: OpenCLIP ViT-bigG/14 with projection.
    TextEncoder2,
    /// A CLIP vision tower with projection (transformers' `CLIPVisionModelWithProjection`), the
    /// image encoder IP-Adapters take: opened on its own ([`Checkpoint::open_image_encoder`]),
    /// never part of a checkpoint, so not in [`Component::ALL`].
    ImageEncoder,
}

impl Component {
    /// Every component of a Stable Diffusion checkpoint, in pipeline order.
    pub const ALL: [Component; 4] =
        [Component::Unet, Component::Vae, Component::TextEncoder, Component::TextEncoder2];

    /// The canonical-name prefix, which is also the diffusers folder name.
    pub fn prefix(self) -> &'static str {
        match self {
            Component::Unet => "unet",
            Component::Vae => "vae",
            Component::TextEncoder => "text_encoder",
            Component::TextEncoder2 => "text_encoder_2",
            Component::ImageEncoder => "image_encoder",
        }
    }

    /// Splits a canonical name into its component and the rest.
    pub fn split_name(name: &str) -> Option<(Component, &str)> {
        Component::ALL.into_iter().chain([Component::ImageEncoder]).find_map(|c| {
            let rest = name.strip_prefix(c.prefix())?.strip_prefix('.')?;
            Some((c, rest))
        })
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}
