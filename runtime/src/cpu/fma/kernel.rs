//! The register tile: up to `MR` rows by `NR` columns of f32 sums in 24 AVX-512 registers.

use std::arch::x86_64::{
    __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps,
    _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
};

use super::gemm::Sums;

/// Rows of a register tile: 8 rows x 3 registers of accumulators, 3 for the B row and 1 for the
/// broadcast A element use 28 of the 32 registers, and each K step loads 11 values for 24 FMAs.
/// On the 2-core Ice Lake this shape ran its FMAs at 93-97% of the one-thread peak from L1,
/// 12x32 at 87-89% in the same minute (benches/RESULTS.md).
pub(crate) const MR: usize = 8;

/// Columns of a register tile and of a packed B panel: three 16-lane registers.
pub(super) const NR: usize = 48;

/// K steps per loop iteration, so the loop's own instructions take few FMA-port slots.
const UNROLL: usize = 4;

/// `c[r, j] = (accumulate ? c[r, j] : 0) + Σ_{l < len} a[r·a_rs + l] · b[l·NR + j] (+ bias[j])`
/// for `r < R`, `j < cols`: A read in place (row stride `a_rs`), B as `len` rows of `NR`
/// columns, of which the first `16·V` are summed (a narrow last panel skips the registers that
/// would hold only its zero columns). One fused multiply-add per term in the order of `l`, then
/// the bias: a row's sums depend on that row and B only.
///
/// # Safety
/// The CPU must have AVX-512 F; `a` must be readable at `r·a_rs + l` for `r < R`, `l < len`,
/// `b` at `len·NR` elements, `out.c` readable and writable at `r·out.rs + j` and `out.bias`
/// readable at `j` for `j < out.cols <= 16·V`.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize, const V: usize>(
    a: *const f32,
    a_rs: usize,
    len: usize,
    b: *const f32,
    out: Sums,
) {
    // Lanes of register `v` inside the tile's columns.
    let masks: [__mmask16; V] = std::array::from_fn(|v| match out.cols.saturating_sub(16 * v) {
        0 => 0,
        n if n >= 16 => u16::MAX,
        n => (1u16 << n) - 1,
    });
    let mut acc: [[__m512; V]; R] = [[_mm512_setzero_ps(); V]; R];
    // SAFETY (all blocks below): the caller guarantees every offset read or written; masked
    // lanes are not accessed.
    if out.accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, acc) in row.iter_mut().enumerate() {
                *acc = unsafe { _mm512_maskz_loadu_ps(masks[v], out.c.add(r * out.rs + 16 * v)) };
            }
        }
    }
    let step = |acc: &mut [[__m512; V]; R], l: usize| {
        let bv: [__m512; V] = std::array::from_fn(|v| unsafe { _mm512_loadu_ps(b.add(l * NR + 16 * v)) });
        for (r, row) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(unsafe { *a.add(r * a_rs + l) });
            for (acc, bv) in row.iter_mut().zip(&bv) {
                *acc = _mm512_fmadd_ps(x, *bv, *acc);
            }
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
    if let Some(bias) = out.bias {
        let bv: [__m512; V] =
            std::array::from_fn(|v| unsafe { _mm512_maskz_loadu_ps(masks[v], bias.add(16 * v)) });
        for row in acc.iter_mut() {
            for (acc, bv) in row.iter_mut().zip(&bv) {
                *acc = _mm512_add_ps(*acc, *bv);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, acc) in row.iter().enumerate() {
            unsafe { _mm512_mask_storeu_ps(out.c.add(r * out.rs + 16 * v), masks[v], *acc) };
        }
    }
}

/// [`tile`] for a run-time row count `rows` in `1..=MR`, with as many registers per row as
/// `out.cols` needs.
///
/// # Safety
/// As for [`tile`] with `R = rows`.
pub(super) unsafe fn tile_rows(
    rows: usize,
    a: *const f32,
    a_rs: usize,
    len: usize,
    b: *const f32,
    out: Sums,
) {
    macro_rules! by_width {
        ($r:literal) => {
            match out.cols.div_ceil(16) {
                1 => tile::<$r, 1>(a, a_rs, len, b, out),
                2 => tile::<$r, 2>(a, a_rs, len, b, out),
                3 => tile::<$r, 3>(a, a_rs, len, b, out),
                _ => unreachable!("a panel has 1 to {NR} columns, not {}", out.cols),
            }
        };
    }
    // SAFETY: forwarded from the caller; `gemm_packed` asserted AVX-512 F.
    unsafe {
        match rows {
            8 => by_width!(8),
            7 => by_width!(7),
            6 => by_width!(6),
            5 => by_width!(5),
            4 => by_width!(4),
            3 => by_width!(3),
            2 => by_width!(2),
            1 => by_width!(1),
            _ => unreachable!("a register tile has 1 to {MR} rows, not {rows}"),
        }
    }
}
