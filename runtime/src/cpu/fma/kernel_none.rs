//! No AVX-512 tile off x86-64: [`super::available`] is false, so nothing here is ever called.

use super::gemm::Sums;

pub(crate) const MR: usize = 8;
pub(super) const NR: usize = 48;

pub(super) unsafe fn tile_rows(_: usize, _: *const f32, _: usize, _: usize, _: *const f32, _: Sums) {
    unreachable!("AVX-512 tiles off x86-64")
}
