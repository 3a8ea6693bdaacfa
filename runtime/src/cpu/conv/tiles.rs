//! Stride-1 convolution of bf16 images on AMX tiles, as one implicit GEMM per chunk of rows.
//!
//! The same grid as `shifted` (pixels of the padded input numbered `r = (b·hp + y)·wp + x`),
//! but instead of one product per kernel tap accumulated in f32, each 32-row block of the grid
//! runs all taps in one pass over the tiles: tap `(ky, kx)` is an [`ASegment`] of the padded
//! input at offset `(ky·wp + kx)·cin`, and the weight row of output channel `co`
//! (`[kh, kw, cin]`, OHWI) is column `co` of B over the same K, tap by tap. The f32 grid is
//! written once, bias included, then cropped to the output.

use half::bf16;
use rayon::prelude::*;

use super::ConvGeometry;
use super::shifted::pad_input;
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
    let mut out = vec![0f32; g.n * g.ho * g.wo * cout]; // [n, ho, wo, cout]
    if out.is_empty() {
        return out;
    }
    let xp = pad_input(x, g, hp, wp);
    let packed = PackedB::from_columns(cout, k, |co| &w[co * k..(co + 1) * k]);
    let segments: Vec<ASegment> = (0..g.kh)
        .flat_map(|ky| (0..g.kw).map(move |kx| ASegment { offset: (ky * wp + kx) * cin, steps: cin / 32 }))
        .collect();
    let rows_per_chunk = (budget / (wp * cout)).clamp(1, g.ho);
    let mut grid = vec![0f32; rows_per_chunk * wp * cout]; // [rows * wp, cout]
    for b in 0..g.n {
        for oy0 in (0..g.ho).step_by(rows_per_chunk) {
            let rows = rows_per_chunk.min(g.ho - oy0);
            let m = rows * wp;
            let grid = &mut grid[..m * cout];
            let r0 = (b * hp + oy0) * wp; // the chunk's first grid row
            amx::gemm_bf16(
                m,
                &xp[r0 * cin..],
                cin,
                &segments,
                &packed,
                grid,
                cout,
                Dst::Overwrite,
                1.0,
                bias,
                true,
            );
            // Keep the grid's first `wo` columns of each row.
            let dst = &mut out[(b * g.ho + oy0) * g.wo * cout..][..rows * g.wo * cout];
            dst.par_chunks_mut(g.wo * cout)
                .zip(grid.par_chunks(wp * cout))
                .for_each(|(o, row)| o.copy_from_slice(&row[..g.wo * cout]));
        }
    }
    out
}
