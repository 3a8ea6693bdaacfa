//! Convolution as one implicit GEMM on the AVX-512 register tile ([`crate::cpu::fma`]): no
//! im2col, no per-tap passes over the output.
//!
//! Pad the input once to `xp [n, hp, wp, cin]`. Output pixels `(b, oy, ox..ox + 8)` read, under
//! kernel tap `(ky, kx)`, padded pixels `(b, oy·s + ky, (ox..ox + 8)·s + kx)`: rows `s·cin`
//! apart in `xp`, starting `(ky·wp + kx)·cin` past the tap-(0, 0) pixel. So a register tile of
//! eight output pixels along one image row takes every tap as a K run (`Segment`) over its A
//! rows, sums all `kh·kw·cin` terms in registers, adds the bias and writes each output element
//! once. Tiles never cross an image row, so no work falls on the padding columns.
//!
//! A pixel's sum is one chain over `(ky, kx, ci)` in order, then the bias, whatever the batch or
//! the tiles (batch invariance).

use std::borrow::Cow;

use super::ConvGeometry;
use super::shifted::pad_input;
use crate::cpu::Elem;
use crate::cpu::fma::{MR, Panels, RowTile, Segment, gemm_packed};
use crate::cpu::matmul::{Mat, bias_rows};

/// `x [n, h, w, cin]` convolved with `w [cout, kh, kw, cin]` plus `bias` -> `[n, ho, wo, cout]`,
/// the weight in any stored dtype (widened as it is packed).
///
/// # Panics
/// On a CPU without AVX-512 F (callers check [`crate::cpu::fma::enabled`]).
pub(super) fn conv2d_implicit<T: Elem>(
    x: &[f32],
    w: &[T],
    bias: Option<&[f32]>,
    g: ConvGeometry,
) -> Vec<f32> {
    let (hp, wp, s) = (g.h + 2 * g.pad, g.w + 2 * g.pad, g.stride);
    let (cin, cout, k) = (g.cin, g.cout, g.kh * g.kw * g.cin);
    let rows = g.n * g.ho * g.wo;
    if rows * cout * k == 0 {
        return bias_rows(bias, rows, cout); // nothing to sum: the bias, or zeros
    }
    let xp = if g.pad == 0 { Cow::Borrowed(x) } else { Cow::Owned(pad_input(x, g, hp, wp)) };
    let packed = Panels::pack(Mat::transposed(w, k), k, cout); // B [kh·kw·cin, cout]
    let taps: Vec<Segment> = (0..g.kh)
        .flat_map(|ky| (0..g.kw).map(move |kx| Segment { offset: (ky * wp + kx) * cin, len: cin }))
        .collect();
    let mut tiles = Vec::with_capacity(g.n * g.ho * g.wo.div_ceil(MR));
    for b in 0..g.n {
        for oy in 0..g.ho {
            for ox in (0..g.wo).step_by(MR) {
                tiles.push(RowTile {
                    a: ((b * hp + oy * s) * wp + ox * s) * cin,
                    dst: ((b * g.ho + oy) * g.wo + ox) * cout,
                    rows: MR.min(g.wo - ox),
                });
            }
        }
    }
    let mut out = vec![0f32; rows * cout]; // [n, ho, wo, cout]
    gemm_packed(&xp, s * cin, &taps, &tiles, &packed, bias, &mut out, cout);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    use crate::cpu::fma;
    use crate::random::SplitMix64;

    /// A random input and weight for `g`.
    fn draw(rng: &mut SplitMix64, g: ConvGeometry) -> (Vec<f32>, Vec<f32>) {
        let x = (0..g.n * g.h * g.w * g.cin).map(|_| rng.unit_variance()).collect();
        let w = (0..g.cout * g.kh * g.kw * g.cin).map(|_| rng.unit_variance()).collect();
        (x, w)
    }

    /// Convolutions (strides 1 and 2, paddings 0 to 2, kernels 3 and 5, widths off the tile,
    /// channels off the panel) match an f64 direct convolution, and a pixel's bits do not depend
    /// on the batch.
    #[test]
    fn convolutions_match_an_f64_direct_convolution() {
        if !fma::available() {
            eprintln!("skipped: this CPU has no AVX-512 F");
            return;
        }
        let mut rng = SplitMix64::new(29);
        for (n, h, w, cin, cout, kk, stride, pad) in [
            (2, 9, 34, 40, 77, 3, 1, 1),
            (1, 6, 12, 8, 33, 5, 1, 2),
            (2, 11, 13, 24, 50, 3, 2, 1),
            (1, 7, 9, 5, 3, 3, 2, 0),
        ] {
            let (ho, wo) = ((h + 2 * pad - kk) / stride + 1, (w + 2 * pad - kk) / stride + 1);
            let g = ConvGeometry { n, h, w, cin, cout, kh: kk, kw: kk, stride, pad, ho, wo };
            let (x, wt) = draw(&mut rng, g);
            let bias: Vec<f32> = (0..cout).map(|_| rng.unit_variance()).collect();
            let got = conv2d_implicit(&x, &wt, Some(&bias), g);
            let k = kk * kk * cin;
            for (i, v) in got.iter().enumerate() {
                let (co, px) = (i % cout, i / cout);
                let (b, oy, ox) = (px / (ho * wo), px / wo % ho, px % wo);
                let (mut sum, mut abs) = (f64::from(bias[co]), f64::from(bias[co]).abs());
                for ky in 0..kk {
                    for kx in 0..kk {
                        let y = (oy * stride + ky) as isize - pad as isize;
                        let xx = (ox * stride + kx) as isize - pad as isize;
                        if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                            continue;
                        }
                        for ci in 0..cin {
                            let xi = ((b * h + y as usize) * w + xx as usize) * cin + ci;
                            let p = f64::from(x[xi]) * f64::from(wt[co * k + (ky * kk + kx) * cin + ci]);
                            sum += p;
                            abs += p.abs();
                        }
                    }
                }
                assert!((f64::from(*v) - sum).abs() <= 1e-6 * (1.0 + abs), "{g:?} element {i}: {v} vs {sum}");
            }
            let one = ConvGeometry { n: 1, ..g };
            let first = conv2d_implicit(&x[..h * w * cin], &wt, Some(&bias), one);
            assert!(first.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{g:?}: batch of one");
        }
    }

    /// An f16 or bf16 weight widened while packing gives the bits of the f32 product on the same
    /// values, widened beforehand by `half`.
    #[test]
    fn half_weights_are_widened_exactly() {
        if !fma::available() {
            eprintln!("skipped: this CPU has no AVX-512 F");
            return;
        }
        let mut rng = SplitMix64::new(31);
        let (n, h, w, cin, cout, kk) = (1, 5, 11, 70, 20, 3);
        let g = ConvGeometry { n, h, w, cin, cout, kh: kk, kw: kk, stride: 1, pad: 1, ho: h, wo: w };
        let (x, wt) = draw(&mut rng, g);
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        let w16: Vec<f16> = wt.iter().map(|&v| f16::from_f32(v)).collect();
        let widened: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
        assert_eq!(bits(conv2d_implicit(&x, &w16, None, g)), bits(conv2d_implicit(&x, &widened, None, g)));
        let wb: Vec<bf16> = wt.iter().map(|&v| bf16::from_f32(v)).collect();
        let widened: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        assert_eq!(bits(conv2d_implicit(&x, &wb, None, g)), bits(conv2d_implicit(&x, &widened, None, g)));
    }
}
