//! kiln-kernels: kiln's CUDA C kernels (`cuda/*.cu`, one file per family of ops), compiled at
//! run time with NVRTC through cudarc for the GPU's own architecture, and their typed launchers.
//!
//! - [`Family`]: the four source files (attention, conv, norm, elementwise) and their entry points;
//! - [`KernelDType`]: the storage types the kernels are instantiated for (bf16, f16), always
//!   accumulating in f32;
//! - [`Compiler`] ([`compile`]): the one compile path, NVRTC plus an on-disk PTX cache keyed by
//!   source, options, architecture and NVRTC version; [`locate`] finds NVRTC, the CUDA headers
//!   and ptxas (a toolkit or NVIDIA's Python packages); [`ptxas`] reads register and spill
//!   reports for the CI check;
//! - [`KernelModules`]: every family loaded into a CUDA context, functions by typed kernel;
//! - one module per family holding its typed kernel list and launchers, which return
//!   [`launch::LaunchError`];
//! - [`skip_gpu_test`]: how GPU tests skip where there is no GPU, unless `KILN_REQUIRE_GPU=1`.
//!
//! The attention kernel follows FlashAttention-2 (Dao, 2023): online softmax over key blocks,
//! no materialised score matrix. Convolutions are implicit GEMMs on the tensor cores. Group norm
//! statistics use Welford's algorithm merged with Chan et al.'s formula.
#![deny(missing_docs)]

pub mod attention;
pub mod compile;
pub mod conv;
pub mod elementwise;
mod family;
pub mod launch;
pub mod locate;
pub mod modules;
pub mod norm;
mod nvrtc;
pub mod ptxas;
mod require;

pub use compile::{Arch, CompileError, Compiler};
pub use family::{Family, KernelDType};
pub use modules::{KernelModules, ModuleError};
pub use require::{gpu_required, skip_gpu_test};
