//! 2-d convolution on NHWC activations with OHWI weights, as GEMM.
//!
//! On CPUs with AVX-512 F every convolution but 1x1 is one implicit GEMM on the register tile
//! (see `implicit`). Elsewhere, stride-1 convolutions of images 32 pixels wide and up skip
//! im2col (see `shifted`), and the rest go as follows.
//!
//! Output pixel `(b, oy, ox)` is the dot product of weight row `co` (`kh * kw * cin` values in
//! `(ky, kx, ci)` order, which is exactly how an OHWI weight is laid out) with the input patch
//! under the kernel, read in the same order. A 1x1 convolution with stride 1 and no padding is
//! therefore a plain linear layer over pixels. Every other convolution copies patches into an
//! im2col buffer one chunk of output rows at a time (at most `COL_BUDGET` floats, whatever
//! the image size: a full im2col of SDXL's VAE at 1024x1024x128 would take ~5 GB) and multiplies
//! each chunk by the weight with `gemm`, writing straight into the output. The products go
//! through `gemm_rows`, so an output pixel's value does not depend on where the chunks fall,
//! i.e. on the batch.

mod implicit;
mod shifted;
mod tiles;

use rayon::prelude::*;

use super::matmul::{Dst, GEMM_ROWS, Mat, bias_rows, gemm_rows, linear_f32};
use super::{ELEMWISE_CHUNK, round_to, widen};
use crate::CpuStorage;

/// Most f32 elements an im2col chunk holds (16 MiB).
pub(crate) const COL_BUDGET: usize = 1 << 22;

/// Sizes of one convolution, validated by [`crate::Tensor::conv2d`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeometry {
    /// Batch.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride, both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
}

impl ConvGeometry {
    /// Length of one weight row and one im2col row.
    fn patch_len(&self) -> usize {
        self.kh * self.kw * self.cin
    }

    /// Whether the convolution is a linear layer over pixels.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
}

/// `x [n, h, w, cin]` convolved with `weight [cout, kh, kw, cin]` plus `bias [cout]`
/// -> `[n, ho, wo, cout]`.
pub(crate) fn conv2d(
    x: &CpuStorage,
    weight: &CpuStorage,
    bias: Option<&CpuStorage>,
    g: ConvGeometry,
) -> CpuStorage {
    let bf = bias.map(widen);
    if let (CpuStorage::BF16(xb), CpuStorage::BF16(wb)) = (x, weight) {
        if g.is_pointwise() {
            return super::matmul::linear(x, weight, bias, (g.n * g.h * g.w, g.cin, g.cout));
        }
        if tiles::fits(&g) {
            return round_to(tiles::conv2d_tiles(xb, wb, bf.as_deref(), g, COL_BUDGET), x.dtype());
        }
    }
    let xf = widen(x);
    if super::fma::enabled() && !g.is_pointwise() {
        // The tile widens the weight as it packs it: no f32 copy of an f16 or bf16 weight.
        let bf = bf.as_deref();
        let out = match weight {
            CpuStorage::F32(w) => implicit::conv2d_implicit(&xf, w, bf, g),
            CpuStorage::F16(w) => implicit::conv2d_implicit(&xf, w, bf, g),
            CpuStorage::BF16(w) => implicit::conv2d_implicit(&xf, w, bf, g),
        };
        return round_to(out, x.dtype());
    }
    let out = conv2d_f32(&xf, &widen(weight), bf.as_deref(), g, COL_BUDGET);
    round_to(out, x.dtype())
}

/// The f32 convolution, with the im2col budget as a parameter so tests can force many chunks.
pub(crate) fn conv2d_f32(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: ConvGeometry,
    col_budget: usize,
) -> Vec<f32> {
    let rows = g.n * g.ho * g.wo;
    let k = g.patch_len();
    if g.is_pointwise() {
        return linear_f32(x, w, bias, (rows, k, g.cout));
    }
    if super::fma::enabled() {
        return implicit::conv2d_implicit(x, w, bias, g);
    }
    if shifted::worth_it(&g) {
        return shifted::conv2d_shifted(x, w, bias, g, col_budget);
    }
    conv2d_im2col(x, w, bias, g, col_budget)
}

/// The convolution as products of im2col chunks with the weight.
fn conv2d_im2col(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: ConvGeometry, col_budget: usize) -> Vec<f32> {
    let (rows, k) = (g.n * g.ho * g.wo, g.patch_len());
    let mut out = bias_rows(bias, rows, g.cout); // [n*ho*wo, cout]
    if rows == 0 || g.cout == 0 || k == 0 {
        return out; // nothing to sum: the bias, or zeros
    }
    let mode = if bias.is_some() { Dst::Accumulate } else { Dst::Overwrite };
    // Whole GEMM blocks per chunk, at least one, at most what the rows need.
    let chunk_rows = (col_budget / k / GEMM_ROWS).clamp(1, rows.div_ceil(GEMM_ROWS)) * GEMM_ROWS;
    let mut col = vec![0f32; chunk_rows.min(rows) * k];
    for (ci, dst) in out.chunks_mut(chunk_rows * g.cout).enumerate() {
        let r0 = ci * chunk_rows;
        let m = dst.len() / g.cout;
        let col = &mut col[..m * k];
        im2col(x, g, r0, col);
        let (lhs, rhs) = (Mat::rows(col, k), Mat::transposed(w, k));
        gemm_rows((m, g.cout, k), dst, g.cout, mode, lhs, rhs, 1.0, true);
    }
    out
}

/// Fills `col` (`[rows, kh*kw*cin]`) with the input patches of output rows `r0..r0 + rows`,
/// zeros where the kernel hangs over the padding.
fn im2col(x: &[f32], g: ConvGeometry, r0: usize, col: &mut [f32]) {
    let k = g.patch_len();
    let rows_per_task = (ELEMWISE_CHUNK / k).max(1);
    col.par_chunks_mut(rows_per_task * k).enumerate().for_each(|(t, block)| {
        for (i, row) in block.chunks_exact_mut(k).enumerate() {
            let r = r0 + t * rows_per_task + i;
            let (b, oy, ox) = (r / (g.ho * g.wo), r / g.wo % g.ho, r % g.wo);
            patch(x, g, (b, oy, ox), row);
        }
    });
}

/// Copies the patch under output pixel `(b, oy, ox)` into `row`, `(ky, kx, ci)` order.
fn patch(x: &[f32], g: ConvGeometry, (b, oy, ox): (usize, usize, usize), row: &mut [f32]) {
    let span = g.kw * g.cin; // one kernel row of the patch
    // Kernel columns that land inside the image: kx in kx_lo..kx_hi.
    let ix0 = (ox * g.stride) as isize - g.pad as isize;
    let kx_lo = (-ix0).clamp(0, g.kw as isize) as usize;
    let kx_hi = (g.w as isize - ix0).clamp(kx_lo as isize, g.kw as isize) as usize;
    for (ky, seg) in row.chunks_exact_mut(span).enumerate() {
        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
        if iy < 0 || iy >= g.h as isize || kx_lo == kx_hi {
            seg.fill(0.0);
            continue;
        }
        // Along one kernel row the input pixels are consecutive, so the valid part is one copy.
        let start = ((b * g.h + iy as usize) * g.w) as isize + ix0 + kx_lo as isize;
        let start = start as usize * g.cin;
        seg[..kx_lo * g.cin].fill(0.0);
        seg[kx_lo * g.cin..kx_hi * g.cin].copy_from_slice(&x[start..start + (kx_hi - kx_lo) * g.cin]);
        seg[kx_hi * g.cin..].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An im2col budget smaller than one row, and ones that cut an image into chunks, give
    /// bitwise the result of a single chunk.
    #[test]
    fn chunking_does_not_change_the_result() {
        let g = ConvGeometry {
            n: 2,
            h: 17,
            w: 15,
            cin: 3,
            cout: 4,
            kh: 3,
            kw: 3,
            stride: 2,
            pad: 1,
            ho: 9,
            wo: 8,
        };
        let x: Vec<f32> =
            (0..g.n * g.h * g.w * g.cin).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let w: Vec<f32> = (0..g.cout * 27).map(|i| ((i * 53 % 97) as f32 - 48.0) / 40.0).collect();
        let bias = [0.5, -1.0, 0.25, 2.0];
        let whole = conv2d_im2col(&x, &w, Some(&bias), g, usize::MAX / 2);
        for budget in [1, 27 * GEMM_ROWS, 27 * 2 * GEMM_ROWS + 3] {
            let chunked = conv2d_im2col(&x, &w, Some(&bias), g, budget);
            for (i, (a, b)) in chunked.iter().zip(&whole).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "budget {budget}, index {i}: {a} vs {b}");
            }
        }
    }

    /// A naive f64 convolution, the reference.
    fn reference(x: &[f32], w: &[f32], bias: &[f32], g: ConvGeometry) -> Vec<f64> {
        let mut out = vec![0f64; g.n * g.ho * g.wo * g.cout];
        for b in 0..g.n {
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    for co in 0..g.cout {
                        let mut acc = bias[co] as f64;
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let (iy, ix) = (
                                    (oy * g.stride + ky) as isize - g.pad as isize,
                                    (ox * g.stride + kx) as isize - g.pad as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                for ci in 0..g.cin {
                                    let xv =
                                        x[((b * g.h + iy as usize) * g.w + ix as usize) * g.cin + ci] as f64;
                                    acc += xv * w[((co * g.kh + ky) * g.kw + kx) * g.cin + ci] as f64;
                                }
                            }
                        }
                        out[((b * g.ho + oy) * g.wo + ox) * g.cout + co] = acc;
                    }
                }
            }
        }
        out
    }

    fn draw(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The shifted products (stride 1, large images), im2col and the path this CPU dispatches to
    /// all equal an f64 convolution; the shifted path's pixels do not depend on its chunking or
    /// on the batch.
    #[test]
    fn shifted_products_equal_the_reference_whatever_the_chunks_and_batch() {
        for (n, h, w, k, pad) in [(2, 33, 34, 3, 1), (1, 40, 40, 5, 2), (2, 36, 32, 3, 0)] {
            let (ho, wo) = (h + 2 * pad - k + 1, w + 2 * pad - k + 1);
            let g = ConvGeometry { n, h, w, cin: 5, cout: 7, kh: k, kw: k, stride: 1, pad, ho, wo };
            assert!(shifted::worth_it(&g), "{g:?}");
            let x = draw(n * h * w * g.cin, 1);
            let wt = draw(g.cout * k * k * g.cin, 2);
            let bias = draw(g.cout, 3);
            let want = reference(&x, &wt, &bias, g);
            let whole = shifted::conv2d_shifted(&x, &wt, Some(&bias), g, usize::MAX / 2);
            let im2col = conv2d_im2col(&x, &wt, Some(&bias), g, usize::MAX / 2);
            let dispatched = conv2d_f32(&x, &wt, Some(&bias), g, COL_BUDGET);
            for (path, got) in [("shifted", &whole), ("im2col", &im2col), ("conv2d_f32", &dispatched)] {
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (*a as f64 - b).abs() < 1e-5 * (1.0 + b.abs()),
                        "{path} {g:?} index {i}: {a} vs {b}"
                    );
                }
            }
            for budget in [1, 7 * (w + 2 * pad) * 3 + 5] {
                let chunked = shifted::conv2d_shifted(&x, &wt, Some(&bias), g, budget);
                assert!(
                    chunked.iter().zip(&whole).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "budget {budget}"
                );
            }
            let one = ConvGeometry { n: 1, ..g };
            let first = shifted::conv2d_shifted(&x[..h * w * g.cin], &wt, Some(&bias), one, usize::MAX / 2);
            assert!(first.iter().zip(&whole).all(|(a, b)| a.to_bits() == b.to_bits()), "batch of one");
        }
    }
}
