//! kiln-kernels: kiln's CUDA C kernels (`cuda/*.cu`, one file per family of ops), compiled at
//! run time with NVRTC through cudarc for the GPU's own architecture, and their typed launchers.
//!
//! - [`Family`]: the four source files (attention, conv, norm, elementwise) and their entry points;
//! - [`KernelDType`]: the storage types the kernels are instantiated for (bf16, f16), always
//!   accumulating in f32;
//! - one module per family holding its typed kernel list and launchers.
//!
//! The attention kernel follows FlashAttention-2 (Dao, 2023): online softmax over key blocks,
//! no materialised score matrix. Convolutions are implicit GEMMs on the tensor cores.
#![deny(missing_docs)]

pub mod attention;
pub mod compile;
pub mod conv;
pub mod elementwise;
mod family;
pub mod launch;
pub mod locate;
pub mod norm;
mod nvrtc;
pub mod ptxas;

pub use compile::{Arch, CompileError, Compiler};
pub use family::{Family, KernelDType};
