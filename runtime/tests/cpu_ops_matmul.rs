//! Linear, matmul and conv2d against naive f64 loops, for every dtype.

mod common;

use common::{DTYPES, assert_close, rand_tensor, rng};
use kiln_runtime::DType;
use kiln_runtime::ops::Conv2dParams;

/// `x [m, k] * w[n, k]^T + b[n]` in f64.
fn linear_ref(x: &[f64], w: &[f64], b: Option<&[f64]>, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = b.map_or(0.0, |b| b[j]);
            for p in 0..k {
                acc += x[i * k + p] * w[j * k + p];
            }
            out[i * n + j] = acc;
        }
    }
    out
}

/// Bound on the intermediate sums of a length-`k` dot product of values in [-1, 1].
fn dot_scale(k: usize) -> f64 {
    k as f64
}

#[test]
fn linear_matches_reference() {
    let mut rng = rng(1);
    // (leading dims, K, N, bias): odd sizes, a rank-3 input, an SD-like width.
    let cases: [(&[usize], usize, usize, bool); 4] =
        [(&[7], 5, 3, true), (&[2, 33], 65, 17, false), (&[64], 320, 40, true), (&[1, 3], 1, 9, true)];
    for dtype in DTYPES {
        for &(lead, k, n, with_bias) in &cases {
            let m: usize = lead.iter().product();
            let (x, xq) = rand_tensor(&mut rng, &[lead, &[k]].concat(), dtype);
            let (w, wq) = rand_tensor(&mut rng, &[n, k], dtype);
            let (b, bq) = rand_tensor(&mut rng, &[n], dtype);
            let bias = with_bias.then_some(&b);
            let got = x.linear(&w, bias).unwrap();
            let expected = linear_ref(&xq, &wq, with_bias.then_some(&bq[..]), m, k, n);
            let what = format!("linear {lead:?}x{k} -> {n}, bias {with_bias}");
            assert_close(&what, &got, &[lead, &[n]].concat(), &expected, dot_scale(k));
        }
    }
}

#[test]
fn matmul_matches_reference() {
    let mut rng = rng(2);
    for dtype in DTYPES {
        // Batched, including a batch larger than the thread count with small products.
        for &(b, m, k, n) in &[(1, 5, 7, 3), (3, 17, 33, 9), (9, 4, 40, 6)] {
            let (a, aq) = rand_tensor(&mut rng, &[b, m, k], dtype);
            let (r, rq) = rand_tensor(&mut rng, &[b, k, n], dtype);
            let mut expected = vec![0.0; b * m * n];
            for bi in 0..b {
                for i in 0..m {
                    for j in 0..n {
                        expected[(bi * m + i) * n + j] =
                            (0..k).map(|p| aq[(bi * m + i) * k + p] * rq[(bi * k + p) * n + j]).sum();
                    }
                }
            }
            assert_close(
                &format!("matmul [{b},{m},{k}]x[{b},{k},{n}]"),
                &a.matmul(&r).unwrap(),
                &[b, m, n],
                &expected,
                dot_scale(k),
            );
        }
        // Plain rank 2.
        let (a, aq) = rand_tensor(&mut rng, &[6, 11], dtype);
        let (r, rq) = rand_tensor(&mut rng, &[11, 4], dtype);
        let mut expected = vec![0.0; 24];
        for i in 0..6 {
            for j in 0..4 {
                expected[i * 4 + j] = (0..11).map(|p| aq[i * 11 + p] * rq[p * 4 + j]).sum();
            }
        }
        assert_close("matmul [6,11]x[11,4]", &a.matmul(&r).unwrap(), &[6, 4], &expected, dot_scale(11));
    }
}

/// Direct convolution in f64: NHWC input, OHWI weight.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f64],
    (n, h, w, cin): (usize, usize, usize, usize),
    wt: &[f64],
    (cout, kh, kw): (usize, usize, usize),
    b: Option<&[f64]>,
    stride: usize,
    pad: usize,
) -> (Vec<f64>, [usize; 4]) {
    let ho = (h + 2 * pad - kh) / stride + 1;
    let wo = (w + 2 * pad - kw) / stride + 1;
    let mut out = vec![0.0; n * ho * wo * cout];
    for bi in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                for co in 0..cout {
                    let mut acc = b.map_or(0.0, |b| b[co]);
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * stride + ky) as isize - pad as isize;
                            let ix = (ox * stride + kx) as isize - pad as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let (iy, ix) = (iy as usize, ix as usize);
                            for ci in 0..cin {
                                acc += x[((bi * h + iy) * w + ix) * cin + ci]
                                    * wt[((co * kh + ky) * kw + kx) * cin + ci];
                            }
                        }
                    }
                    out[((bi * ho + oy) * wo + ox) * cout + co] = acc;
                }
            }
        }
    }
    (out, [n, ho, wo, cout])
}

#[test]
fn conv2d_matches_reference() {
    let mut rng = rng(3);
    // (input NHWC, cout, k, stride, padding, bias)
    let cases = [
        ((1, 8, 8, 3), 5, 3, 1, 1, true),      // 3x3 same padding, odd channels
        ((2, 7, 9, 4), 6, 3, 2, 1, true),      // stride 2 with odd H and W
        ((1, 9, 7, 5), 3, 3, 2, 0, false),     // stride 2, no padding
        ((2, 5, 6, 7), 9, 1, 1, 0, true),      // 1x1 stride 1: direct GEMM path
        ((1, 5, 5, 4), 3, 1, 2, 0, true),      // 1x1 stride 2: im2col path
        ((1, 4, 5, 3), 2, 3, 1, 0, true),      // 3x3 valid
        ((1, 3, 3, 2), 4, 3, 1, 2, false),     // padding larger than half the kernel
        ((1, 6, 6, 32), 16, 3, 1, 1, true),    // wider channels
        ((1, 128, 128, 32), 4, 3, 1, 1, true), // im2col larger than one chunk (4 Mi floats)
    ];
    for dtype in DTYPES {
        for &((n, h, w, cin), cout, k, stride, padding, with_bias) in &cases {
            let (x, xq) = rand_tensor(&mut rng, &[n, h, w, cin], dtype);
            let (wt, wq) = rand_tensor(&mut rng, &[cout, k, k, cin], dtype);
            let (b, bq) = rand_tensor(&mut rng, &[cout], dtype);
            let got = x.conv2d(&wt, with_bias.then_some(&b), Conv2dParams { stride, padding }).unwrap();
            let (expected, shape) = conv_ref(
                &xq,
                (n, h, w, cin),
                &wq,
                (cout, k, k),
                with_bias.then_some(&bq[..]),
                stride,
                padding,
            );
            let what = format!("conv2d {:?} k{k} s{stride} p{padding} -> {cout}", [n, h, w, cin]);
            assert_close(&what, &got, &shape, &expected, dot_scale(k * k * cin));
        }
    }
}

/// An OIHW weight permuted to OHWI convolves like PyTorch's layout read directly.
#[test]
fn conv2d_accepts_permuted_oihw_weight() {
    let mut rng = rng(4);
    let (n, h, w, cin, cout) = (1, 6, 5, 3, 4);
    let (x, xq) = rand_tensor(&mut rng, &[n, h, w, cin], DType::F32);
    let (oihw, oq) = rand_tensor(&mut rng, &[cout, cin, 3, 3], DType::F32);
    let ohwi = oihw.permute(&[0, 2, 3, 1]).unwrap();
    // The same weight rearranged by hand into OHWI for the reference.
    let mut wq = vec![0.0; oq.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for ky in 0..3 {
                for kx in 0..3 {
                    wq[((co * 3 + ky) * 3 + kx) * cin + ci] = oq[((co * cin + ci) * 3 + ky) * 3 + kx];
                }
            }
        }
    }
    let (expected, shape) = conv_ref(&xq, (n, h, w, cin), &wq, (cout, 3, 3), None, 1, 1);
    let got = x.conv2d(&ohwi, None, Conv2dParams { stride: 1, padding: 1 }).unwrap();
    assert_close("conv2d with permuted OIHW weight", &got, &shape, &expected, dot_scale(27));
}
