//! Activations: GELU in its exact erf form, GEGLU, SiLU.
//!
//! GELU matches PyTorch's default `F.gelu` (`approximate="none"`): `x/2 * (1 + erf(x/sqrt 2))`.
//! GEGLU matches diffusers' `GEGLU`: the projection's last dimension `2N` splits into
//! `hidden, gate = x.chunk(2, -1)` and the output is `hidden * gelu(gate)`.

use rayon::prelude::*;

use super::math::exp_f32;
use super::{ELEMWISE_CHUNK, round_to, unary_map, widen};
use crate::CpuStorage;

/// GELU of one value, erf form.
#[inline]
pub(crate) fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
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
    let xf = widen(x);
    let rows = if n == 0 { 0 } else { xf.len() / (2 * n) };
    let mut out = vec![0f32; rows * n];
    if rows > 0 {
        let rows_per_task = (ELEMWISE_CHUNK / n).max(1);
        out.par_chunks_mut(rows_per_task * n).zip(xf.par_chunks(rows_per_task * 2 * n)).for_each(|(o, i)| {
            for (orow, irow) in o.chunks_exact_mut(n).zip(i.chunks_exact(2 * n)) {
                let (hidden, gate) = irow.split_at(n);
                for ((o, &hv), &gv) in orow.iter_mut().zip(hidden).zip(gate) {
                    *o = hv * gelu_f32(gv);
                }
            }
        });
    }
    round_to(out, x.dtype())
}
