//! Stride-1 convolution of bf16 images on AMX tiles, as one implicit GEMM per chunk of rows.
//!
//! The same grid as `shifted` (pixels of the padded input numbered `r = (b·hp + y)·wp + x`),
//! but instead of one product per kernel tap accumulated in f32, each 32-row block of the grid
//! runs all taps in one pass over the tiles: tap `(ky, kx)` is an [`ASegment`] of the padded
//! input at offset `(ky·wp + kx)·cin`, and the weight row of output channel `co`
//! (`[kh, kw, cin]`, OHWI) is column `co` of B over the same K, tap by tap. The f32 grid is
//! written once, bias included, then cropped to the output.

use half::bf16;

use super::ConvGeometry;
use super::shifted::{over_grid_chunks, pad_input};
use crate::cpu::amx::{self, ASegment, PackedB};
use crate::cpu::matmul::Dst;

/// Whether the tiles can run this convolution: AMX present, stride 1, input channels a
/// multiple of 32 (the tile's K step).
pub(super) fn fits(g: &ConvGeometry) -> bool {
    g.stride == 1 && g.cin.is_multiple_of(32) && g.cin > 0 && amx::enabled()
}

/// `x [n, h, w, cin]` (bf16) convolved with `w [cout, kh, kw, cin]` (bf16) plus `bias`
/// -> f32 `[n, ho, wo, cout]`; a grid chunk (whole padded rows) holds at most `budget` floats.
pub(super) fn conv2d_tiles(
    x: &[bf16],
    w: &[bf16],
    bias: Option<&[f32]>,
    g: ConvGeometry,
    budget: usize,
) -> Vec<f32> {
    let (hp, wp, cin, cout) = (g.h + 2 * g.pad, g.w + 2 * g.pad, g.cin, g.cout);
    let k = g.kh * g.kw * cin;
    let xp = pad_input(x, g, hp, wp);
    let packed = PackedB::from_columns(cout, k, |co| &w[co * k..(co + 1) * k]);
    let segments: Vec<ASegment> = (0..g.kh)
        .flat_map(|ky| (0..g.kw).map(move |kx| ASegment { offset: (ky * wp + kx) * cin, steps: cin / 32 }))
        .collect();
    // The bias goes in as the tiles' sums are written, not in the crop.
    over_grid_chunks(g, budget, None, |grid, r0, m| {
        let a = &xp[r0 * cin..];
        amx::gemm_bf16(m, a, cin, &segments, &packed, grid, cout, Dst::Overwrite, 1.0, bias, true);
    })
}
