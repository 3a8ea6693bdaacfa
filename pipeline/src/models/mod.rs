//! The networks of SD 1.5 and SDXL on kiln-runtime tensors: one definition runs on the CPU and
//! on CUDA, with weights read by canonical name from any checkpoint layout.
//!
//! - [`weights`]: one component's tensors, shape-checked, converted and uploaded;
//! - [`nn`]: the layers (linear, conv, group and layer norm) every model is made of;
//! - [`unet`]: the denoising UNet.

mod error;
pub mod nn;
pub mod unet;
mod weights;

pub use error::{ModelError, Result};
pub use weights::Weights;
