//! Stride-1 convolution without im2col: a sum of `kh · kw` matrix products, one per kernel tap,
//! over shifted views of the zero-padded input.
//!
//! Pad the input once to `xp [n, hp, wp, cin]` (`hp = h + 2·pad`, `wp = w + 2·pad`) and number
//! its pixels as rows `r = (b·hp + y)·wp + x`. Output pixel `(b, oy, ox)` is given grid row
//! `r = (b·hp + oy)·wp + ox`; under kernel tap `(ky, kx)` it reads padded row
//! `r + ky·wp + kx`. So for each tap, the rows a run of grid rows reads are one strided matrix
//! of `xp` (row stride `cin`), and the convolution is `Σ_taps xp[rows + shift] · W[:, ky, kx, :]ᵀ`.
//! Grid rows with `ox >= wo` fall on the padding columns: they are computed and dropped, a
//! waste of `1 - wo / wp` (3% at 64 pixels wide), which is why [`worth_it`] keeps small images
//! on im2col. Nothing the size of im2col's `kh·kw` copies of the input is ever written: at the
//! VAE's 512x512x128 those copies cost as much memory traffic as the products themselves.
//!
//! Every product goes through `gemm_rows`, so a pixel's value does not depend on the chunking or
//! the batch; it is summed tap by tap (then the bias), a different order from im2col's.

use rayon::prelude::*;

use super::ConvGeometry;
use crate::cpu::matmul::{Dst, Mat, gemm_rows};

/// Whether the shifted products beat im2col here: stride 1, a kernel larger than 1x1, and at
/// least 90% of the grid rows kept (images 32 pixels wide and up, with padding 1).
pub(super) fn worth_it(g: &ConvGeometry) -> bool {
    g.stride == 1 && g.kh * g.kw > 1 && 10 * g.wo >= 9 * (g.w + 2 * g.pad)
}

/// `x [n, h, w, cin]` convolved (stride 1) with `w [cout, kh, kw, cin]` plus `bias`
/// -> `[n, ho, wo, cout]`; the grid chunk (whole image rows) holds at most `budget` floats.
pub(super) fn conv2d_shifted(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: ConvGeometry,
    budget: usize,
) -> Vec<f32> {
    let (hp, wp, cin, cout) = (g.h + 2 * g.pad, g.w + 2 * g.pad, g.cin, g.cout);
    let k = g.kh * g.kw * cin; // one weight row
    let xp = pad_input(x, g, hp, wp);
    over_grid_chunks(g, budget, bias, |grid, r0, m| {
        for (tap, (ky, kx)) in (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx))).enumerate() {
            let lhs = Mat { data: &xp[(r0 + ky * wp + kx) * cin..], rs: cin, cs: 1 }; // [m, cin]
            let rhs = Mat { data: &w[tap * cin..], rs: 1, cs: k }; // W[:, ky, kx, :]ᵀ: [cin, cout]
            let mode = if tap == 0 { Dst::Overwrite } else { Dst::Accumulate };
            gemm_rows((m, cout, cin), grid, cout, mode, lhs, rhs, 1.0, true);
        }
    })
}

/// The output `[n, ho, wo, cout]` of a grid computed in chunks of whole padded image rows:
/// `fill(grid, r0, m)` writes grid rows `r0..r0 + m` (`[m, cout]`, at most `budget` floats),
/// then each row's first `wo` pixels are kept, plus `bias` when given.
pub(super) fn over_grid_chunks(
    g: ConvGeometry,
    budget: usize,
    bias: Option<&[f32]>,
    mut fill: impl FnMut(&mut [f32], usize, usize),
) -> Vec<f32> {
    let (hp, wp, cout) = (g.h + 2 * g.pad, g.w + 2 * g.pad, g.cout);
    let mut out = vec![0f32; g.n * g.ho * g.wo * cout]; // [n, ho, wo, cout]
    if out.is_empty() {
        return out;
    }
    let rows_per_chunk = (budget / (wp * cout)).clamp(1, g.ho);
    let mut grid = vec![0f32; rows_per_chunk * wp * cout]; // [rows * wp, cout]
    for b in 0..g.n {
        for oy0 in (0..g.ho).step_by(rows_per_chunk) {
            let rows = rows_per_chunk.min(g.ho - oy0);
            let grid = &mut grid[..rows * wp * cout];
            fill(grid, (b * hp + oy0) * wp, rows * wp);
            let dst = &mut out[(b * g.ho + oy0) * g.wo * cout..][..rows * g.wo * cout];
            dst.par_chunks_mut(g.wo * cout).zip(grid.par_chunks(wp * cout)).for_each(|(o, row)| {
                o.copy_from_slice(&row[..g.wo * cout]);
                if let Some(bias) = bias {
                    o.chunks_exact_mut(cout)
                        .for_each(|px| px.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
                }
            });
        }
    }
    out
}

/// `x` zero-padded to `[n, hp, wp, cin]`, followed by the zero rows the last taps read past
/// the end (`(kh - 1)·wp + kw - 1` of them).
pub(super) fn pad_input<T: Copy + Default + Send + Sync>(
    x: &[T],
    g: ConvGeometry,
    hp: usize,
    wp: usize,
) -> Vec<T> {
    let tail = (g.kh - 1) * wp + g.kw - 1;
    let mut xp = vec![T::default(); (g.n * hp * wp + tail) * g.cin];
    let row = g.w * g.cin;
    // Padded image row (b, y) for every input row; the rest stays zero.
    xp[..g.n * hp * wp * g.cin].par_chunks_mut(wp * g.cin).enumerate().for_each(|(r, dst)| {
        let (b, y) = (r / hp, r % hp);
        if (g.pad..g.pad + g.h).contains(&y) {
            let src = ((b * g.h + y - g.pad) * g.w) * g.cin;
            dst[g.pad * g.cin..][..row].copy_from_slice(&x[src..src + row]);
        }
    });
    xp
}
