//! Contiguous element buffers, one variant per dtype.

use std::borrow::Cow;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::DType;

/// A contiguous host buffer. The CPU backend reads any variant as f32 and accumulates in f32.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    /// f32 elements.
    F32(Vec<f32>),
    /// f16 elements.
    F16(Vec<f16>),
    /// bf16 elements.
    BF16(Vec<bf16>),
}

impl CpuStorage {
    /// Stores `data` as `dtype`, rounding to nearest even.
    pub fn from_f32(data: Vec<f32>, dtype: DType) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(data),
            DType::F16 => CpuStorage::F16(to_f16(&data)),
            DType::BF16 => CpuStorage::BF16(to_bf16(&data)),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
        }
    }

    /// Whether the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as f32: borrowed for f32 storage, widened otherwise.
    pub fn as_f32(&self) -> Cow<'_, [f32]> {
        match self {
            CpuStorage::F32(v) => Cow::Borrowed(v),
            CpuStorage::F16(v) => Cow::Owned(v.to_f32_vec()),
            CpuStorage::BF16(v) => Cow::Owned(v.to_f32_vec()),
        }
    }

    /// How many elements are NaN or infinite (one pass, no copy).
    pub fn count_non_finite(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.iter().filter(|x| !x.is_finite()).count(),
            CpuStorage::F16(v) => v.iter().filter(|x| !x.is_finite()).count(),
            CpuStorage::BF16(v) => v.iter().filter(|x| !x.is_finite()).count(),
        }
    }

    /// Converts to another dtype (a clone when it already is that dtype).
    pub fn to_dtype(&self, dtype: DType) -> Self {
        if dtype == self.dtype() {
            return self.clone();
        }
        CpuStorage::from_f32(self.as_f32().into_owned(), dtype)
    }
}

fn to_f16(data: &[f32]) -> Vec<f16> {
    let mut out = vec![f16::ZERO; data.len()];
    out.convert_from_f32_slice(data);
    out
}

fn to_bf16(data: &[f32]) -> Vec<bf16> {
    let mut out = vec![bf16::ZERO; data.len()];
    crate::cpu::math::f32_to_bf16_slice(data, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_counted_in_every_dtype() {
        let values = vec![0.5, f32::NAN, -3.0, f32::INFINITY, 1e5, f32::NEG_INFINITY];
        assert_eq!(CpuStorage::from_f32(values.clone(), DType::F32).count_non_finite(), 3);
        // 1e5 is beyond f16's range: narrowed, it is infinite too.
        assert_eq!(CpuStorage::from_f32(values.clone(), DType::F16).count_non_finite(), 4);
        assert_eq!(CpuStorage::from_f32(values, DType::BF16).count_non_finite(), 3);
    }
}
