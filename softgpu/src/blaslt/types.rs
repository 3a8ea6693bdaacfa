//! The C-level vocabulary of cuBLASLt this module speaks: status codes, element types, and the
//! numeric values of the enums that arrive through attributes (as in `cublasLt.h` of CUDA 12.8,
//! which cudarc's `cuda-12080` bindings mirror).
//!
//! Enums arriving from C are taken as plain integers and interpreted here, never transmuted into
//! Rust enums: a caller may pass any value, and an out-of-range discriminant would be undefined
//! behaviour in Rust.

use std::ffi::CStr;

/// `cublasStatus_t`. `repr(u32)` so that it crosses the C ABI exactly as cudarc's enum does.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success = 0,
    NotInitialized = 1,
    AllocFailed = 3,
    InvalidValue = 7,
    ArchMismatch = 8,
    MappingError = 11,
    ExecutionFailed = 13,
    InternalError = 14,
    NotSupported = 15,
    LicenseError = 16,
}

impl Status {
    /// The status's C name and a one-line description, for `cublasLtGetStatusName/String`.
    pub fn describe(raw: u32) -> (&'static CStr, &'static CStr) {
        match raw {
            0 => (c"CUBLAS_STATUS_SUCCESS", c"success"),
            1 => (c"CUBLAS_STATUS_NOT_INITIALIZED", c"the library was not initialized"),
            3 => (c"CUBLAS_STATUS_ALLOC_FAILED", c"the resource allocation failed"),
            7 => (c"CUBLAS_STATUS_INVALID_VALUE", c"an invalid numeric value was used as an argument"),
            8 => (c"CUBLAS_STATUS_ARCH_MISMATCH", c"an absent device architectural feature is required"),
            11 => (c"CUBLAS_STATUS_MAPPING_ERROR", c"an access to GPU memory space failed"),
            13 => (c"CUBLAS_STATUS_EXECUTION_FAILED", c"the GPU program failed to execute"),
            14 => (c"CUBLAS_STATUS_INTERNAL_ERROR", c"an internal operation failed"),
            15 => (c"CUBLAS_STATUS_NOT_SUPPORTED", c"the functionality requested is not supported"),
            16 => (c"CUBLAS_STATUS_LICENSE_ERROR", c"error detected trying to check the license"),
            _ => (c"<unrecognized cuBLAS status>", c"<unrecognized cuBLAS status>"),
        }
    }
}

/// `cudaDataType_t` values this implementation can store matrices in.
pub mod data_type {
    pub const R_32F: u32 = 0;
    pub const R_16F: u32 = 2;
    pub const R_16BF: u32 = 14;
}

/// `cublasComputeType_t` values.
pub mod compute_type {
    pub const F32: u32 = 68;
    pub const F32_PEDANTIC: u32 = 69;
    pub const F32_FAST_16F: u32 = 74;
    pub const F32_FAST_16BF: u32 = 75;
    pub const F32_FAST_TF32: u32 = 77;
}

/// `cublasOperation_t` values.
pub mod operation {
    pub const N: i32 = 0;
    pub const T: i32 = 1;
    /// Conjugate transpose: the same as `T` for real matrices.
    pub const C: i32 = 2;
}

/// `cublasLtEpilogue_t` values.
pub mod epilogue {
    pub const DEFAULT: u32 = 1;
    pub const RELU: u32 = 2;
    pub const BIAS: u32 = 4;
    pub const RELU_BIAS: u32 = 6;
    pub const GELU: u32 = 32;
    pub const GELU_BIAS: u32 = 36;
}

/// `cublasLtPointerMode_t` values.
pub mod pointer_mode {
    pub const HOST: i32 = 0;
    pub const DEVICE: i32 = 1;
}

/// `cublasLtOrder_t::CUBLASLT_ORDER_COL`, the only order implemented.
pub const ORDER_COL: i32 = 0;
/// `cublasFillMode_t::CUBLAS_FILL_MODE_FULL`, the matmul descriptor's default fill mode.
pub const FILL_MODE_FULL: i32 = 2;

/// A matrix element type this implementation computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    /// The element type named by a `cudaDataType_t`, if implemented.
    pub fn from_raw(raw: u32) -> Option<Dtype> {
        match raw {
            data_type::R_32F => Some(Dtype::F32),
            data_type::R_16F => Some(Dtype::F16),
            data_type::R_16BF => Some(Dtype::BF16),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    /// Widens the elements in `bytes` (native endian, as device memory holds them) into `out`.
    pub fn decode(self, bytes: &[u8], out: &mut [f32]) {
        debug_assert_eq!(bytes.len(), out.len() * self.size());
        match self {
            Dtype::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Dtype::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_bits(u16::from_ne_bytes([b[0], b[1]])).to_f32();
                }
            }
            Dtype::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::bf16::from_bits(u16::from_ne_bytes([b[0], b[1]])).to_f32();
                }
            }
        }
    }

    /// Narrows `values` into `bytes`, rounding to nearest even (what `half` does, and what a
    /// GPU's `cvt.rn` does).
    pub fn encode(self, values: &[f32], bytes: &mut [u8]) {
        debug_assert_eq!(bytes.len(), values.len() * self.size());
        match self {
            Dtype::F32 => {
                for (v, b) in values.iter().zip(bytes.chunks_exact_mut(4)) {
                    b.copy_from_slice(&v.to_ne_bytes());
                }
            }
            Dtype::F16 => {
                for (v, b) in values.iter().zip(bytes.chunks_exact_mut(2)) {
                    b.copy_from_slice(&half::f16::from_f32(*v).to_bits().to_ne_bytes());
                }
            }
            Dtype::BF16 => {
                for (v, b) in values.iter().zip(bytes.chunks_exact_mut(2)) {
                    b.copy_from_slice(&half::bf16::from_f32(*v).to_bits().to_ne_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rounds_to_nearest_even() {
        for dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let v = [1.5f32, -2.25, 0.0, 1024.0];
            let mut bytes = vec![0u8; v.len() * dt.size()];
            dt.encode(&v, &mut bytes);
            let mut back = [0f32; 4];
            dt.decode(&bytes, &mut back);
            assert_eq!(back, v, "{dt:?}");
        }
        // 1 + 2^-8 lies halfway between two bf16 values; the even one is 1.0.
        let mut b = [0u8; 2];
        Dtype::BF16.encode(&[1.0 + 1.0 / 256.0], &mut b);
        assert_eq!(u16::from_ne_bytes(b), half::bf16::from_f32(1.0).to_bits());
    }
}
