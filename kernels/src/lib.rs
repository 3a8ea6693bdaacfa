//! kiln-kernels: kiln's CUDA C kernels (`cuda/*.cu`), compiled at run time with NVRTC through
//! cudarc, and their typed launchers.
//!
//! This crate is empty until the CUDA backend issue lands; the workspace builds and tests
//! without it, and `kiln_runtime::Device::cuda` answers with a typed error meanwhile.
#![deny(missing_docs)]
