//! Group norm, layer norm and softmax against naive f64 loops, for every dtype.

mod common;

use common::{DTYPES, assert_close, normal, rand_tensor, rng, tensor};
use kiln_runtime::DType;

/// Group norm of `x [n, l, c]` in f64, two-pass, biased variance, optional SiLU.
#[allow(clippy::too_many_arguments)]
fn group_norm_ref(
    x: &[f64],
    (n, l, c): (usize, usize, usize),
    groups: usize,
    g: &[f64],
    b: &[f64],
    eps: f64,
    silu: bool,
) -> Vec<f64> {
    let cg = c / groups;
    let mut out = vec![0.0; x.len()];
    for s in 0..n {
        for gi in 0..groups {
            let idx = |p: usize, j: usize| (s * l + p) * c + gi * cg + j;
            let count = (l * cg) as f64;
            let mean =
                (0..l).flat_map(|p| (0..cg).map(move |j| (p, j))).map(|(p, j)| x[idx(p, j)]).sum::<f64>()
                    / count;
            let var = (0..l)
                .flat_map(|p| (0..cg).map(move |j| (p, j)))
                .map(|(p, j)| (x[idx(p, j)] - mean).powi(2))
                .sum::<f64>()
                / count;
            for p in 0..l {
                for j in 0..cg {
                    let ch = gi * cg + j;
                    let y = (x[idx(p, j)] - mean) / (var + eps).sqrt() * g[ch] + b[ch];
                    out[idx(p, j)] = if silu { y / (1.0 + (-y).exp()) } else { y };
                }
            }
        }
    }
    out
}

#[test]
fn group_norm_matches_reference() {
    let mut rng = rng(10);
    // (shape, groups, silu): SD's 32 groups over 320 channels, NHWC and [N, L, C], small odd cases.
    let cases: [(&[usize], usize, bool); 5] = [
        (&[1, 6, 5, 320], 32, true),
        (&[2, 3, 3, 320], 32, false),
        (&[2, 7, 6], 3, true),
        (&[1, 5, 3, 5], 1, false),
        (&[3, 4], 2, true),
    ];
    for dtype in DTYPES {
        for &(shape, groups, silu) in &cases {
            let c = *shape.last().unwrap();
            let (n, l) = (shape[0], shape[1..shape.len() - 1].iter().product());
            let (x, xq) = tensor(normal(&mut rng, shape.iter().product(), 0.3, 2.0), shape, dtype);
            let (g, gq) = rand_tensor(&mut rng, &[c], dtype);
            let (b, bq) = rand_tensor(&mut rng, &[c], dtype);
            let got = x.group_norm(groups, &g, &b, 1e-5, silu).unwrap();
            let expected = group_norm_ref(&xq, (n, l, c), groups, &gq, &bq, 1e-5, silu);
            assert_close(
                &format!("group_norm {shape:?} groups {groups} silu {silu}"),
                &got,
                shape,
                &expected,
                16.0,
            );
        }
    }
}

/// A large mean with a small spread: one-pass `E[x^2] - E[x]^2` in f32 would lose the variance.
#[test]
fn group_norm_keeps_precision_with_large_mean() {
    let mut rng = rng(11);
    let shape = [1, 16, 16, 64];
    let (x, xq) = tensor(normal(&mut rng, 16 * 16 * 64, 1000.0, 0.5), &shape, DType::F32);
    let (g, gq) = rand_tensor(&mut rng, &[64], DType::F32);
    let (b, bq) = rand_tensor(&mut rng, &[64], DType::F32);
    let got = x.group_norm(8, &g, &b, 1e-6, false).unwrap();
    let expected = group_norm_ref(&xq, (1, 256, 64), 8, &gq, &bq, 1e-6, false);
    // x - mean is exact in f32 here, so the error stays that of normalising O(1) values; the
    // intermediate magnitude is x / std ~ 2000.
    assert_close("group_norm mean 1000 std 0.5", &got, &shape, &expected, 2000.0);
}

#[test]
fn layer_norm_matches_reference() {
    let mut rng = rng(12);
    let cases: [&[usize]; 4] = [&[2, 7, 320], &[5, 33], &[3, 1], &[4, 2, 3, 768]];
    for dtype in DTYPES {
        for &shape in &cases {
            let c = *shape.last().unwrap();
            let (x, xq) = tensor(normal(&mut rng, shape.iter().product(), -0.5, 3.0), shape, dtype);
            let (g, gq) = rand_tensor(&mut rng, &[c], dtype);
            let (b, bq) = rand_tensor(&mut rng, &[c], dtype);
            let mut expected = vec![0.0; xq.len()];
            for (row, out) in xq.chunks(c).zip(expected.chunks_mut(c)) {
                let mean = row.iter().sum::<f64>() / c as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64;
                for j in 0..c {
                    out[j] = (row[j] - mean) / (var + 1e-5).sqrt() * gq[j] + bq[j];
                }
            }
            let got = x.layer_norm(&g, &b, 1e-5).unwrap();
            assert_close(&format!("layer_norm {shape:?}"), &got, shape, &expected, 8.0 * (c as f64).sqrt());
        }
    }
}

#[test]
fn softmax_matches_reference() {
    let mut rng = rng(13);
    let cases: [&[usize]; 4] = [&[3, 77], &[2, 5, 1024], &[7], &[4, 3, 1]];
    for dtype in DTYPES {
        for &shape in &cases {
            let c = *shape.last().unwrap();
            // Large logits: without subtracting the maximum, exp would overflow f32.
            let (x, xq) = tensor(normal(&mut rng, shape.iter().product(), 40.0, 30.0), shape, dtype);
            let mut expected = vec![0.0; xq.len()];
            for (row, out) in xq.chunks(c).zip(expected.chunks_mut(c)) {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
                for j in 0..c {
                    out[j] = (row[j] - max).exp() / sum;
                }
            }
            // exp(v - max)'s relative error grows like eps * |v - max|, while the value shrinks
            // like exp(-|v - max|): the absolute error stays below eps.
            assert_close(&format!("softmax {shape:?}"), &x.softmax().unwrap(), shape, &expected, 1.0);
        }
    }
}
