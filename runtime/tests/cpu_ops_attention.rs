//! Multi-head attention against a naive f64 reference, for every dtype.

mod common;

use common::{DTYPES, assert_close, normal, rng, tensor};
use kiln_runtime::Tensor;

/// `softmax(scale * q k^T) v` per batch and head, `q [b, lq, h, d]`, `k, v [b, lk, h, d]`, in f64.
fn attention_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (b, lq, lk, h, d): (usize, usize, usize, usize, usize),
    scale: f64,
) -> Vec<f64> {
    let mut out = vec![0.0; b * lq * h * d];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..lq {
                let qrow = &q[((bi * lq + i) * h + hi) * d..][..d];
                let scores: Vec<f64> = (0..lk)
                    .map(|j| {
                        let krow = &k[((bi * lk + j) * h + hi) * d..][..d];
                        scale * qrow.iter().zip(krow).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                for e in 0..d {
                    let acc: f64 = (0..lk).map(|j| weights[j] * v[((bi * lk + j) * h + hi) * d + e]).sum();
                    out[((bi * lq + i) * h + hi) * d + e] = acc / sum;
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_reference() {
    let mut rng = rng(20);
    // (B, Lq, Lk, H, D): cross-attention on 77 tokens, self-attention with Lq not a multiple of
    // any block size, the SD head dims 40/64/80/160, a batch of 2, many small heads.
    let cases = [
        (1, 70, 77, 2, 40),
        (2, 33, 33, 3, 64),
        (1, 50, 77, 1, 80),
        (1, 21, 9, 2, 160),
        (1, 301, 301, 1, 40),
        (2, 17, 5, 8, 5),
        (1, 1100, 77, 1, 40), // enough rows for the largest query block, plus a partial one
        (1, 40, 1100, 2, 40), // keys over several tiles of the online softmax, the last partial
        (2, 300, 1300, 1, 64),
    ];
    for dtype in DTYPES {
        for &(b, lq, lk, h, d) in &cases {
            let (q, qq) = tensor(normal(&mut rng, b * lq * h * d, 0.0, 1.0), &[b, lq, h, d], dtype);
            let (k, kq) = tensor(normal(&mut rng, b * lk * h * d, 0.0, 1.0), &[b, lk, h, d], dtype);
            let (v, vq) = tensor(normal(&mut rng, b * lk * h * d, 0.0, 1.0), &[b, lk, h, d], dtype);
            let scale = 1.0 / (d as f32).sqrt();
            let got = Tensor::attention(&q, &k, &v, scale).unwrap();
            let expected = attention_ref(&qq, &kq, &vq, (b, lq, lk, h, d), scale as f64);
            // Score errors (a length-D dot product) become relative errors of the weights.
            assert_close(
                &format!("attention B{b} Lq{lq} Lk{lk} H{h} D{d}"),
                &got,
                &[b, lq, h, d],
                &expected,
                4.0 * d as f64,
            );
        }
    }
}

/// Attention over a `[B, L, H*D]` projection reshaped for free to `[B, L, H, D]`, as the models
/// call it, equals attention computed one head at a time on its own contiguous tensor.
#[test]
fn attention_heads_are_independent() {
    let mut rng = rng(21);
    let (b, l, h, d) = (1, 19, 4, 8);
    let (x, _) = tensor(normal(&mut rng, b * l * h * d, 0.0, 1.0), &[b, l, h * d], common::DTYPES[0]);
    let x4 = x.reshape(&[b, l, h, d]).unwrap();
    let all = Tensor::attention(&x4, &x4, &x4, 0.3).unwrap().to_vec_f32().unwrap();
    for head in 0..h {
        let xh = x4.narrow(2, head, 1).unwrap(); // [B, L, 1, D]
        let one = Tensor::attention(&xh, &xh, &xh, 0.3).unwrap().to_vec_f32().unwrap();
        for i in 0..l {
            for e in 0..d {
                let (a, o) = (all[(i * h + head) * d + e], one[i * d + e]);
                assert!((a - o).abs() <= 1e-5, "head {head} row {i} col {e}: {a} vs {o}");
            }
        }
    }
}
