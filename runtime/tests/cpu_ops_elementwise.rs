//! Activations, broadcasting add/mul, affine and timestep embeddings against f64 references.

mod common;

use common::{DTYPES, assert_close, normal, rand_tensor, rng, tensor};
use kiln_runtime::ops::TimestepEmbeddingParams;
use kiln_runtime::{DType, Device, Tensor};

fn gelu_ref(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

fn silu_ref(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

#[test]
fn gelu_and_silu_match_reference() {
    let mut rng = rng(30);
    for dtype in DTYPES {
        // More elements than one parallel chunk, an odd count, and a wide range (tails of erf).
        for shape in [&[3, 11_111][..], &[5], &[2, 3, 4, 5]] {
            let (x, xq) = tensor(normal(&mut rng, shape.iter().product(), 0.0, 3.0), shape, dtype);
            let expected: Vec<f64> = xq.iter().map(|&v| gelu_ref(v)).collect();
            assert_close(&format!("gelu {shape:?}"), &x.gelu().unwrap(), shape, &expected, 4.0);
            let expected: Vec<f64> = xq.iter().map(|&v| silu_ref(v)).collect();
            assert_close(&format!("silu {shape:?}"), &x.silu().unwrap(), shape, &expected, 4.0);
        }
    }
}

#[test]
fn geglu_matches_reference() {
    let mut rng = rng(31);
    for dtype in DTYPES {
        for shape in [&[2, 9, 2 * 40][..], &[3, 2], &[1, 5, 2 * 1280]] {
            let (x, xq) = tensor(normal(&mut rng, shape.iter().product(), 0.0, 2.0), shape, dtype);
            let c2 = *shape.last().unwrap();
            let n = c2 / 2;
            let expected: Vec<f64> =
                xq.chunks(c2).flat_map(|row| (0..n).map(move |j| row[j] * gelu_ref(row[n + j]))).collect();
            let out_shape = [&shape[..shape.len() - 1], &[n]].concat();
            assert_close(&format!("geglu {shape:?}"), &x.geglu().unwrap(), &out_shape, &expected, 16.0);
        }
    }
}

/// Row-major index of `out_idx` (in the broadcast shape) in an operand of shape `dims`.
fn broadcast_index(out_idx: &[usize], dims: &[usize]) -> usize {
    let lead = out_idx.len() - dims.len();
    dims.iter().enumerate().fold(0, |acc, (i, &d)| acc * d + if d == 1 { 0 } else { out_idx[lead + i] })
}

#[test]
fn add_and_mul_broadcast_like_numpy() {
    let mut rng = rng(32);
    // (lhs, rhs, out): same shape, channel bias over NHWC, per-sample [N,1,1,C] term, both sides
    // broadcasting, a scalar-like [1], lower-rank rhs in the middle, an empty tensor.
    let cases: [(&[usize], &[usize], &[usize]); 11] = [
        (&[2, 3, 4, 5], &[2, 3, 4, 5], &[2, 3, 4, 5]),
        (&[2, 4, 4, 320], &[320], &[2, 4, 4, 320]),
        (&[2, 3, 5, 7], &[2, 1, 1, 7], &[2, 3, 5, 7]),
        (&[3, 1, 6], &[1, 4, 1], &[3, 4, 6]),
        (&[6, 7], &[1], &[6, 7]),
        (&[5], &[4, 3, 5], &[4, 3, 5]),
        (&[4, 3, 1], &[3, 9], &[4, 3, 9]),
        (&[0, 3], &[3], &[0, 3]),
        // Larger than one parallel task: rows split mid-way, and one merged 40000-long row.
        (&[5, 7001], &[7001], &[5, 7001]),
        (&[2, 20000], &[2, 20000], &[2, 20000]),
        (&[3, 1, 9000], &[2, 1], &[3, 2, 9000]),
    ];
    for dtype in DTYPES {
        for &(ls, rs, os) in &cases {
            let (a, aq) = rand_tensor(&mut rng, ls, dtype);
            let (b, bq) = rand_tensor(&mut rng, rs, dtype);
            let n: usize = os.iter().product();
            let (mut sum, mut prod) = (vec![0.0; n], vec![0.0; n]);
            for flat in 0..n {
                let mut idx = vec![0; os.len()];
                let mut r = flat;
                for (i, &d) in os.iter().enumerate().rev() {
                    idx[i] = r % d;
                    r /= d;
                }
                let (x, y) = (aq[broadcast_index(&idx, ls)], bq[broadcast_index(&idx, rs)]);
                sum[flat] = x + y;
                prod[flat] = x * y;
            }
            assert_close(&format!("add {ls:?} + {rs:?}"), &a.add(&b).unwrap(), os, &sum, 2.0);
            assert_close(&format!("mul {ls:?} * {rs:?}"), &a.mul(&b).unwrap(), os, &prod, 1.0);
            // Commutes, including the output shape.
            assert_close(&format!("add {rs:?} + {ls:?}"), &b.add(&a).unwrap(), os, &sum, 2.0);
        }
    }
}

#[test]
fn affine_matches_reference() {
    let mut rng = rng(33);
    for dtype in DTYPES {
        let (x, xq) = rand_tensor(&mut rng, &[7, 4099], dtype);
        let expected: Vec<f64> = xq.iter().map(|v| v * 0.18215 - 0.5).collect();
        assert_close("affine", &x.affine(0.18215, -0.5).unwrap(), &[7, 4099], &expected, 2.0);
    }
}

/// diffusers' formula evaluated in f64.
fn timestep_ref(ts: &[f32], dim: usize, p: TimestepEmbeddingParams) -> Vec<f64> {
    let half = dim / 2;
    let mut out = vec![0.0; ts.len() * dim];
    for (r, &t) in ts.iter().enumerate() {
        for i in 0..half {
            let freq = (-(p.max_period as f64).ln() * i as f64
                / (half as f64 - p.downscale_freq_shift as f64))
                .exp();
            let (s, c) = (t as f64 * freq).sin_cos();
            let (first, second) = if p.flip_sin_to_cos { (c, s) } else { (s, c) };
            out[r * dim + i] = first;
            out[r * dim + half + i] = second;
        }
    }
    out
}

#[test]
fn timestep_embedding_matches_formula() {
    let ts = [0.0, 1.0, 3.5, 250.0, 999.0];
    let configs = [
        (320, TimestepEmbeddingParams::default()),
        (1280, TimestepEmbeddingParams::default()),
        (
            9,
            TimestepEmbeddingParams { flip_sin_to_cos: false, downscale_freq_shift: 1.0, max_period: 10_000 },
        ),
    ];
    for dtype in DTYPES {
        for &(dim, p) in &configs {
            let got = Tensor::timestep_embedding(&ts, dim, p, dtype, Device::Cpu).unwrap();
            // Like diffusers, the op forms t * freq in f32: for t near 1000 the argument is only
            // known to a few ulps of 1000 (~1e-4), which the sine passes on.
            let expected = timestep_ref(&ts, dim, p);
            assert_close(&format!("timestep_embedding dim {dim}"), &got, &[ts.len(), dim], &expected, 2000.0);
        }
    }
}

/// Expected values generated by diffusers itself: `tools/timestep_embedding_ref.py`.
#[test]
fn timestep_embedding_matches_diffusers() {
    let text = include_str!("data/timestep_embedding_diffusers.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    for case in json["cases"].as_array().unwrap() {
        let dim = case["dim"].as_u64().unwrap() as usize;
        let p = TimestepEmbeddingParams {
            flip_sin_to_cos: case["flip_sin_to_cos"].as_bool().unwrap(),
            downscale_freq_shift: case["downscale_freq_shift"].as_f64().unwrap() as f32,
            max_period: case["max_period"].as_u64().unwrap() as u32,
        };
        let ts: Vec<f32> =
            case["timesteps"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap() as f32).collect();
        let expected: Vec<f64> =
            case["expected"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let got = Tensor::timestep_embedding(&ts, dim, p, DType::F32, Device::Cpu).unwrap();
        // Both sides form t * freq in f32, but torch's vectorised exp is not correctly rounded
        // (e.g. freq 2 of 160 is one ulp above the rounded value), so for t = 999 the
        // arguments can differ by an ulp of 1000 (6e-5): the tolerance scales with max t.
        let what = format!("timestep_embedding vs diffusers, dim {dim}, {p:?}");
        assert_close(&what, &got, &[ts.len(), dim], &expected, 2000.0);
    }
}
