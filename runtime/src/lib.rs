//! kiln-runtime: tensors, the CPU reference backend, and safetensors checkpoints.
//!
//! - [`Tensor`]: a shape and contiguous row-major storage in [`DType`] f32, f16 or bf16, on a
//!   [`Device`]. Activations are NHWC. Model code calls the ops in [`ops`] as methods on
//!   tensors; each op checks shapes once and dispatches to the backend of its operands' device,
//!   so one model definition runs unchanged on the CPU and (with the `cuda` feature) on a GPU.
//! - `cuda` (with the `cuda` feature): the GPU backend: a per-device registry with one stream
//!   and a caching allocator, cuBLASLt for matrix products, kiln-kernels' launchers for the rest.
//! - [`cpu`]: the reference backend, rayon-parallel, matrix products through the `gemm` crate,
//!   f32 accumulation whatever the storage dtype.
//! - [`checkpoint`]: memory-mapped safetensors files, detection of the layout (single-file
//!   original or diffusers folder) and model family (SD 1.5, SDXL base and refiner,
//!   inpainting variants), and the mapping of every tensor name onto one canonical naming.
//!   [`checkpoint::Checkpoint::open`] gives each component's size and every tensor by its
//!   canonical name (`unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight`).
//! - [`profile`]: time per family of ops, for `kiln bench`; [`random`]: a fixed-seed generator
//!   for random weights and bench inputs.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod device;
mod dtype;
mod error;
pub mod files;
pub mod ops;
pub mod profile;
pub mod random;
mod storage;
mod tensor;

pub use device::Device;
pub use dtype::DType;
pub use error::{Error, Result};
pub use storage::CpuStorage;
pub use tensor::{Storage, Tensor};
