//! The kernel source files and the storage types they are instantiated for.

use std::fmt;

/// The storage type a kernel reads and writes; arithmetic is f32 inside every kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelDType {
    /// `__nv_bfloat16`.
    BF16,
    /// `__half`.
    F16,
}

impl KernelDType {
    /// Both types, in table order.
    pub const ALL: [KernelDType; 2] = [KernelDType::BF16, KernelDType::F16];

    /// The suffix entry points carry (`bf16`, `f16`).
    pub fn suffix(self) -> &'static str {
        match self {
            KernelDType::BF16 => "bf16",
            KernelDType::F16 => "f16",
        }
    }
}

impl fmt::Display for KernelDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// One CUDA source file of `kernels/cuda/`, compiled as one module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Fused flash-attention forward.
    Attention,
    /// Implicit-GEMM convolution on the tensor cores.
    Conv,
    /// Group norm (optionally fused with SiLU), layer norm and the row softmax.
    Norm,
    /// Activations, broadcast arithmetic, resampling, concatenation, embeddings, casts,
    /// permutations.
    Elementwise,
}

impl Family {
    /// Every family, in table order.
    pub const ALL: [Family; 4] = [Family::Attention, Family::Conv, Family::Norm, Family::Elementwise];

    /// The file name under `kernels/cuda/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Family::Attention => "attention.cu",
            Family::Conv => "conv.cu",
            Family::Norm => "norm.cu",
            Family::Elementwise => "elementwise.cu",
        }
    }

    /// The CUDA C source, embedded at build time.
    pub fn source(self) -> &'static str {
        match self {
            Family::Attention => include_str!("../cuda/attention.cu"),
            Family::Conv => include_str!("../cuda/conv.cu"),
            Family::Norm => include_str!("../cuda/norm.cu"),
            Family::Elementwise => include_str!("../cuda/elementwise.cu"),
        }
    }
}
