//! The register tile: up to `MR` rows by `NR` columns of f32 sums in 24 AVX-512 registers.

use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

/// Rows of a register tile: 12 rows x 2 registers of accumulators, 2 for the B row, 1 for the
/// broadcast A element leaves 5 of the 32 registers free.
pub(super) const MR: usize = 12;

/// Columns of a register tile and of a packed B panel: two 16-lane registers.
pub(super) const NR: usize = 32;

/// K steps per loop iteration, so the loop's own instructions take few FMA-port slots.
const UNROLL: usize = 4;

/// `c[r, j] = (first ? 0 : c[r, j]) + Σ_{l < len} a[r·a_rs + l] · b[l·NR + j]` for `r < R`,
/// `j < NR`: A read in place (row stride `a_rs`), B as `len` rows of `NR` columns, `c` with row
/// stride `c_rs`. One fused multiply-add per term in the order of `l`: a row's sums depend on
/// that row and B only.
///
/// # Safety
/// The CPU must have AVX-512 F; `a` must be readable at `r·a_rs + l` for `r < R`, `l < len`,
/// `b` at `len·NR` elements, and `c` readable and writable at `r·c_rs + j`.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(
    a: *const f32,
    a_rs: usize,
    len: usize,
    b: *const f32,
    c: *mut f32,
    c_rs: usize,
    first: bool,
) {
    let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
    // SAFETY (all blocks below): the caller guarantees every offset read or written.
    if !first {
        for (r, row) in acc.iter_mut().enumerate() {
            unsafe {
                row[0] = _mm512_loadu_ps(c.add(r * c_rs));
                row[1] = _mm512_loadu_ps(c.add(r * c_rs + 16));
            }
        }
    }
    let step = |acc: &mut [[__m512; 2]; R], l: usize| {
        let (b0, b1) = unsafe { (_mm512_loadu_ps(b.add(l * NR)), _mm512_loadu_ps(b.add(l * NR + 16))) };
        for (r, row) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(unsafe { *a.add(r * a_rs + l) });
            row[0] = _mm512_fmadd_ps(x, b0, row[0]);
            row[1] = _mm512_fmadd_ps(x, b1, row[1]);
        }
    };
    let whole = len / UNROLL * UNROLL;
    for l in (0..whole).step_by(UNROLL) {
        for u in 0..UNROLL {
            step(&mut acc, l + u);
        }
    }
    for l in whole..len {
        step(&mut acc, l);
    }
    for (r, row) in acc.iter().enumerate() {
        unsafe {
            _mm512_storeu_ps(c.add(r * c_rs), row[0]);
            _mm512_storeu_ps(c.add(r * c_rs + 16), row[1]);
        }
    }
}

/// [`tile`] for a run-time row count `rows` in `1..=MR`.
///
/// # Safety
/// As for [`tile`] with `R = rows`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile_rows(
    rows: usize,
    a: *const f32,
    a_rs: usize,
    len: usize,
    b: *const f32,
    c: *mut f32,
    c_rs: usize,
    first: bool,
) {
    // SAFETY: forwarded from the caller; `gemm_packed` asserted AVX-512 F.
    unsafe {
        match rows {
            12 => tile::<12>(a, a_rs, len, b, c, c_rs, first),
            11 => tile::<11>(a, a_rs, len, b, c, c_rs, first),
            10 => tile::<10>(a, a_rs, len, b, c, c_rs, first),
            9 => tile::<9>(a, a_rs, len, b, c, c_rs, first),
            8 => tile::<8>(a, a_rs, len, b, c, c_rs, first),
            7 => tile::<7>(a, a_rs, len, b, c, c_rs, first),
            6 => tile::<6>(a, a_rs, len, b, c, c_rs, first),
            5 => tile::<5>(a, a_rs, len, b, c, c_rs, first),
            4 => tile::<4>(a, a_rs, len, b, c, c_rs, first),
            3 => tile::<3>(a, a_rs, len, b, c, c_rs, first),
            2 => tile::<2>(a, a_rs, len, b, c, c_rs, first),
            1 => tile::<1>(a, a_rs, len, b, c, c_rs, first),
            _ => unreachable!("a register tile has 1 to {MR} rows, not {rows}"),
        }
    }
}
