//! Little-endian element decoding from a file's bytes into host storage.
//!
//! A safetensors data region is not necessarily aligned for its element type (the header's
//! length is arbitrary), so elements are read with `from_le_bytes` on byte chunks, never by
//! reinterpreting the slice.

use half::{bf16, f16};

use super::file::Dtype;
use crate::{CpuStorage, DType};

/// Decodes `bytes` holding little-endian elements of `src` into storage of `dst`.
///
/// Same-type f16/bf16/f32 copies keep the bits exactly; other pairs go through f32 (exact for
/// every float source that fits, rounded to nearest even when narrowing). Integers and booleans
/// become their numeric value. Returns `None` for other dtypes (fp8, fp4, complex).
pub fn decode(bytes: &[u8], src: Dtype, dst: DType) -> Option<CpuStorage> {
    match (src, dst) {
        (Dtype::F32, DType::F32) => Some(CpuStorage::F32(decode_f32(bytes, src)?)),
        (Dtype::F16, DType::F16) => {
            Some(CpuStorage::F16(chunks::<2>(bytes).map(f16::from_le_bytes).collect()))
        }
        (Dtype::BF16, DType::BF16) => {
            Some(CpuStorage::BF16(chunks::<2>(bytes).map(bf16::from_le_bytes).collect()))
        }
        _ => Some(CpuStorage::from_f32(decode_f32(bytes, src)?, dst)),
    }
}

/// Decodes little-endian elements of `src` to f32 values; `None` for an undecodable dtype.
pub fn decode_f32(bytes: &[u8], src: Dtype) -> Option<Vec<f32>> {
    let v: Vec<f32> = match src {
        Dtype::F64 => chunks::<8>(bytes).map(|b| f64::from_le_bytes(b) as f32).collect(),
        Dtype::F32 => chunks::<4>(bytes).map(f32::from_le_bytes).collect(),
        Dtype::F16 => chunks::<2>(bytes).map(|b| f16::from_le_bytes(b).to_f32()).collect(),
        Dtype::BF16 => chunks::<2>(bytes).map(|b| bf16::from_le_bytes(b).to_f32()).collect(),
        Dtype::I64 => chunks::<8>(bytes).map(|b| i64::from_le_bytes(b) as f32).collect(),
        Dtype::I32 => chunks::<4>(bytes).map(|b| i32::from_le_bytes(b) as f32).collect(),
        Dtype::I16 => chunks::<2>(bytes).map(|b| i16::from_le_bytes(b) as f32).collect(),
        Dtype::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        Dtype::U64 => chunks::<8>(bytes).map(|b| u64::from_le_bytes(b) as f32).collect(),
        Dtype::U32 => chunks::<4>(bytes).map(|b| u32::from_le_bytes(b) as f32).collect(),
        Dtype::U16 => chunks::<2>(bytes).map(|b| u16::from_le_bytes(b) as f32).collect(),
        Dtype::U8 => bytes.iter().map(|&b| b as f32).collect(),
        Dtype::BOOL => bytes.iter().map(|&b| if b != 0 { 1.0 } else { 0.0 }).collect(),
        _ => return None,
    };
    Some(v)
}

/// Iterates over `bytes` in fixed-size arrays (a trailing partial chunk is impossible here: the
/// file's byte counts were validated against dtype × shape when it was opened).
fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_f32_reads_little_endian() {
        // One byte of padding in front puts the f32s at an odd address.
        let mut bytes = vec![0xAAu8];
        for v in [1.5f32, -2.25, 3.0e-8] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(decode_f32(&bytes[1..], Dtype::F32).unwrap(), vec![1.5, -2.25, 3.0e-8]);
    }

    #[test]
    fn f16_to_f16_keeps_bits_and_bf16_widens_exactly() {
        let vals = [f16::from_f32(0.1), f16::from_f32(-65504.0), f16::from_bits(1)];
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        match decode(&bytes, Dtype::F16, DType::F16).unwrap() {
            CpuStorage::F16(v) => assert_eq!(v, vals),
            other => panic!("expected f16 storage, got {:?}", other.dtype()),
        }
        let b = [bf16::from_f32(3.140625)];
        let bytes: Vec<u8> = b.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decode(&bytes, Dtype::BF16, DType::F32).unwrap().as_f32()[0], 3.140625);
    }

    #[test]
    fn integers_and_doubles_become_values() {
        let bytes: Vec<u8> = [0i64, 76, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decode_f32(&bytes, Dtype::I64).unwrap(), vec![0.0, 76.0, -3.0]);
        let bytes: Vec<u8> = [0.25f64].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decode_f32(&bytes, Dtype::F64).unwrap(), vec![0.25]);
        assert_eq!(decode_f32(&[0, 1, 7], Dtype::BOOL).unwrap(), vec![0.0, 1.0, 1.0]);
    }

    #[test]
    fn fp8_is_refused() {
        assert!(decode(&[0u8; 4], Dtype::F8_E4M3, DType::F32).is_none());
    }
}
