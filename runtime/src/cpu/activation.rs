//! Activations: GELU in its exact erf form, GEGLU, SiLU.
//!
//! GELU matches PyTorch's default `F.gelu` (`approximate="none"`): `x/2 * (1 + erf(x/sqrt 2))`.
//! GEGLU matches diffusers' `GEGLU`: the projection's last dimension `2N` splits into
//! `hidden, gate = x.chunk(2, -1)` and the output is `hidden * gelu(gate)`.

use super::math::{erf_f32, exp_f32, vectorized};
use super::{produce_rows, read_f32, unary_map};
use crate::CpuStorage;

/// GELU of one value, erf form (the vectorisable `erf`: within 2e-7 of the exact one).
#[inline(always)]
pub(crate) fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// SiLU (swish) of one value: `x * sigmoid(x)`, with the vectorisable `exp`.
#[inline(always)]
pub(crate) fn silu_f32(x: f32) -> f32 {
    x / (1.0 + exp_f32(-x))
}

/// Element-wise GELU.
pub(crate) fn gelu(x: &CpuStorage) -> CpuStorage {
    unary_map(x, gelu_f32)
}

/// Element-wise SiLU.
pub(crate) fn silu(x: &CpuStorage) -> CpuStorage {
    unary_map(x, silu_f32)
}

/// GEGLU of `x [rows, 2n]` -> `[rows, n]`.
pub(crate) fn geglu(x: &CpuStorage, n: usize) -> CpuStorage {
    let rows = x.len().checked_div(2 * n).unwrap_or(0);
    produce_rows(x.dtype(), rows, n, |r0, out| {
        let xs = read_f32(x, r0 * 2 * n, 2 * out.len());
        for (orow, irow) in out.chunks_exact_mut(n).zip(xs.chunks_exact(2 * n)) {
            let (hidden, gate) = irow.split_at(n);
            vectorized(
                #[inline(always)]
                || {
                    for ((o, &hv), &gv) in orow.iter_mut().zip(hidden).zip(gate) {
                        *o = hv * gelu_f32(gv);
                    }
                },
            );
        }
    })
}
