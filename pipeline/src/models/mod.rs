//! The networks of SD 1.5 and SDXL on kiln-runtime tensors: one definition runs on the CPU and
//! on CUDA, with weights read by canonical name from any checkpoint layout.
//!
//! - [`Weights`]: one component's tensors, shape-checked, converted and uploaded;
//! - [`nn`]: the layers (linear, conv, group and layer norm) every model is made of;
//! - [`settings`]: `NAME.json` beside a checkpoint (scheduler overrides, request defaults);
//! - [`patch`]: the weights LoRAs replace after load, by canonical name;
//! - [`clip`]: the CLIP / OpenCLIP text encoders; [`conditioning`]: prompts to embeddings;
//! - [`vae`]: the autoencoder between images and latents;
//! - [`unet`]: the denoising UNet (and ControlNets); [`ip_adapter`]: IP-Adapter weights;
//! - [`ModelFacts`]: what request validation needs of a model (family, text-encoder depth),
//!   read without loading weights.

pub mod clip;
pub mod conditioning;
mod error;
mod facts;
pub mod ip_adapter;
pub mod nn;
pub mod patch;
pub mod settings;
pub mod unet;
pub mod vae;
mod weights;

pub use error::{ModelError, Result};
pub use facts::{ModelFacts, diffusers_clip_skip};
pub use weights::{Loans, Weights};
