//! Upsampling, concatenation, permutation, narrowing and chunking against index arithmetic in
//! the test. These ops copy stored elements, so results must be exact in every dtype.

mod common;

use common::{DTYPES, rand_tensor, rng};
use kiln_runtime::Tensor;

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The multi-index of flat position `flat` in `dims`.
fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for (i, &d) in dims.iter().enumerate().rev() {
        idx[i] = flat % d;
        flat /= d;
    }
    idx
}

fn assert_exact(what: &str, got: &Tensor, shape: &[usize], expected: &[f64]) {
    assert_eq!(got.dims(), shape, "{what}: shape");
    let got = got.to_vec_f32().unwrap();
    let bad: Vec<_> =
        got.iter().zip(expected).enumerate().filter(|(_, (g, e))| **g as f64 != **e).take(5).collect();
    assert!(bad.is_empty(), "{what}: first mismatches (index, (got, expected)): {bad:?}");
    assert_eq!(got.len(), expected.len(), "{what}: element count");
}

#[test]
fn upsample_nearest2x_repeats_each_pixel() {
    let mut rng = rng(40);
    for dtype in DTYPES {
        for (n, h, w, c) in [(1, 3, 5, 4), (2, 1, 1, 3), (1, 4, 3, 320)] {
            let (x, xq) = rand_tensor(&mut rng, &[n, h, w, c], dtype);
            let (ho, wo) = (2 * h, 2 * w);
            let mut expected = vec![0.0; n * ho * wo * c];
            for b in 0..n {
                for y in 0..ho {
                    for xx in 0..wo {
                        for ch in 0..c {
                            expected[((b * ho + y) * wo + xx) * c + ch] =
                                xq[((b * h + y / 2) * w + xx / 2) * c + ch];
                        }
                    }
                }
            }
            assert_exact(
                &format!("upsample {:?} {dtype}", [n, h, w, c]),
                &x.upsample_nearest2x().unwrap(),
                &[n, ho, wo, c],
                &expected,
            );
        }
    }
}

#[test]
fn concat_along_every_dim() {
    let mut rng = rng(41);
    for dtype in DTYPES {
        let base = [2, 3, 4, 5];
        for dim in 0..4 {
            // Three inputs with different sizes along `dim` (one of them 1).
            let sizes = [2, 1, 3];
            let inputs: Vec<_> = sizes
                .iter()
                .map(|&s| {
                    let mut shape = base.to_vec();
                    shape[dim] = s;
                    let (t, q) = rand_tensor(&mut rng, &shape, dtype);
                    (t, q, shape)
                })
                .collect();
            let mut out_shape = base.to_vec();
            out_shape[dim] = sizes.iter().sum();
            let n: usize = out_shape.iter().product();
            let expected: Vec<f64> = (0..n)
                .map(|flat| {
                    let mut idx = unravel(flat, &out_shape);
                    let mut which = 0;
                    while idx[dim] >= sizes[which] {
                        idx[dim] -= sizes[which];
                        which += 1;
                    }
                    let (_, q, shape) = &inputs[which];
                    q[idx.iter().zip(strides(shape)).map(|(i, s)| i * s).sum::<usize>()]
                })
                .collect();
            let refs: Vec<&Tensor> = inputs.iter().map(|(t, _, _)| t).collect();
            assert_exact(
                &format!("concat dim {dim} {dtype}"),
                &Tensor::concat(&refs, dim).unwrap(),
                &out_shape,
                &expected,
            );
        }
    }
}

#[test]
fn permute_matches_index_arithmetic() {
    let mut rng = rng(42);
    let cases: [(&[usize], &[usize]); 5] = [
        (&[4, 3, 3, 5], &[0, 2, 3, 1]), // OIHW -> OHWI, as the loaders do
        (&[2, 3, 4], &[2, 0, 1]),
        (&[2, 3, 4, 5, 3], &[4, 1, 3, 0, 2]),
        (&[6, 7], &[1, 0]),
        (&[3, 4], &[0, 1]), // identity
    ];
    for dtype in DTYPES {
        for &(dims, perm) in &cases {
            let (x, xq) = rand_tensor(&mut rng, dims, dtype);
            let out_shape: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
            let in_strides = strides(dims);
            let expected: Vec<f64> = (0..xq.len())
                .map(|flat| {
                    let idx = unravel(flat, &out_shape);
                    xq[idx.iter().zip(perm).map(|(&i, &p)| i * in_strides[p]).sum::<usize>()]
                })
                .collect();
            assert_exact(
                &format!("permute {dims:?} by {perm:?} {dtype}"),
                &x.permute(perm).unwrap(),
                &out_shape,
                &expected,
            );
        }
    }
}

#[test]
fn narrow_and_chunk_split_like_torch() {
    let mut rng = rng(43);
    for dtype in DTYPES {
        let dims = [2, 7, 6];
        let (x, xq) = rand_tensor(&mut rng, &dims, dtype);
        let st = strides(&dims);
        for dim in 0..3 {
            let (start, len) = (1, dims[dim] - 1);
            let mut out_shape = dims.to_vec();
            out_shape[dim] = len;
            let n: usize = out_shape.iter().product();
            let expected: Vec<f64> = (0..n)
                .map(|flat| {
                    let mut idx = unravel(flat, &out_shape);
                    idx[dim] += start;
                    xq[idx.iter().zip(&st).map(|(i, s)| i * s).sum::<usize>()]
                })
                .collect();
            assert_exact(
                &format!("narrow dim {dim} {dtype}"),
                &x.narrow(dim, start, len).unwrap(),
                &out_shape,
                &expected,
            );
        }
        // torch.chunk: 7 into 3 gives 3 + 3 + 1; 6 into 4 gives 2 + 2 + 2 (three pieces).
        let sizes = |dim, n| x.chunk(n, dim).unwrap().iter().map(|t| t.dims()[dim]).collect::<Vec<_>>();
        assert_eq!(sizes(1, 3), [3, 3, 1]);
        assert_eq!(sizes(2, 4), [2, 2, 2]);
        // The halves of a GEGLU-style projection put back together give the input.
        let halves = x.chunk(2, 2).unwrap();
        let joined = Tensor::concat(&[&halves[0], &halves[1]], 2).unwrap();
        assert_exact("chunk then concat", &joined, &dims, &xq);
    }
}
