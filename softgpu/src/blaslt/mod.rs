//! cuBLASLt on the CPU: the subset of NVIDIA's lightweight GEMM library that cudarc and kiln
//! use, exported under its C names so that `libkiln_softgpu.so` can stand in for
//! `libcublasLt.so`.
//!
//! - [`types`]: status codes, element types and the enum values that arrive as integers;
//! - [`desc`]: the objects behind the handles and their size-checked attributes;
//! - [`plan`]: what a descriptor and four layouts mean, and what is refused;
//! - [`gemm`]: the reference matmul on device memory;
//! - [`abi`], [`matmul`], [`logger`], [`info`]: the exported `extern "C"` functions.
//!
//! Implemented: `D = act(alpha * op(A) op(B) + beta * C + bias)` with bf16, f16 or f32
//! column-major operands (leading dimensions, strided batches including interleaved and
//! broadcast strides), f32 compute and scale, host or device scalars, epilogues DEFAULT, BIAS,
//! RELU, RELU_BIAS, GELU, GELU_BIAS. Everything else is `CUBLAS_STATUS_NOT_SUPPORTED`, from the
//! heuristic as from the matmul.

pub mod abi;
pub mod desc;
pub mod gemm;
pub mod info;
pub mod logger;
pub mod matmul;
pub mod plan;
pub mod types;

pub use abi::*;
pub use info::*;
pub use logger::{
    cublasLtLoggerForceDisable, cublasLtLoggerOpenFile, cublasLtLoggerSetLevel, cublasLtLoggerSetMask,
};
pub use matmul::{HeuristicResult, MatmulAlgo, cublasLtMatmul, cublasLtMatmulAlgoGetHeuristic};
pub use types::Status;
