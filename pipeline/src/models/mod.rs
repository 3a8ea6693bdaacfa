//! The networks of SD 1.5 and SDXL on kiln-runtime tensors: one definition runs on the CPU and
//! on CUDA, with weights read by canonical name from any checkpoint layout.
//!
//! - [`Weights`]: one component's tensors, shape-checked, converted and uploaded;
//! - [`nn`]: the layers (linear, conv, group and layer norm) every model is made of;
//! - [`clip`]: the CLIP / OpenCLIP text encoders; [`conditioning`]: prompts to embeddings;
//! - [`vae`]: the autoencoder between images and latents;
//! - [`unet`]: the denoising UNet.

pub mod clip;
pub mod conditioning;
mod error;
pub mod nn;
pub mod unet;
pub mod vae;
mod weights;

pub use error::{ModelError, Result};
pub use weights::Weights;
