//! Bad shapes and mixed dtypes give typed errors naming the op, never a panic.

mod common;

use common::{rand_tensor, rng};
use kiln_runtime::ops::Conv2dParams;
use kiln_runtime::{DType, Error, Tensor};

fn t(shape: &[usize]) -> Tensor {
    rand_tensor(&mut rng(50), shape, DType::F32).0
}

fn t16(shape: &[usize]) -> Tensor {
    rand_tensor(&mut rng(51), shape, DType::F16).0
}

/// Asserts a shape error from `op`, and that its message names the op.
fn assert_shape_err(r: kiln_runtime::Result<Tensor>, op: &str) {
    match r {
        Err(e @ Error::Shape { op: o, .. }) if o == op => assert!(e.to_string().starts_with(op), "{e}"),
        other => panic!("{op}: expected Error::Shape, got {other:?}"),
    }
}

fn assert_rank_err(r: kiln_runtime::Result<Tensor>, op: &str, expected: usize) {
    match r {
        Err(Error::Rank { op: o, expected: e, .. }) if o == op && e == expected => {}
        other => panic!("{op}: expected Error::Rank({expected}), got {other:?}"),
    }
}

fn assert_dtype_err(r: kiln_runtime::Result<Tensor>, op: &str) {
    match r {
        Err(Error::DTypeMismatch { op: o, lhs: DType::F32, rhs: DType::F16 }) if o == op => {}
        other => panic!("{op}: expected Error::DTypeMismatch(f32, f16), got {other:?}"),
    }
}

#[test]
fn linear_and_matmul_reject_bad_shapes() {
    assert_shape_err(t(&[4, 5]).linear(&t(&[3, 6]), None), "linear");
    assert_shape_err(t(&[4, 5]).linear(&t(&[3, 5]), Some(&t(&[4]))), "linear");
    assert_rank_err(t(&[4, 5]).linear(&t(&[3, 5, 1]), None), "linear", 2);
    assert_shape_err(t(&[]).linear(&t(&[3, 1]), None), "linear");
    assert_shape_err(t(&[2, 3, 4]).matmul(&t(&[2, 5, 6])), "matmul");
    assert_shape_err(t(&[2, 3, 4]).matmul(&t(&[3, 4, 6])), "matmul");
    assert_shape_err(t(&[3, 4]).matmul(&t(&[1, 4, 6])), "matmul");
}

#[test]
fn conv2d_rejects_bad_shapes() {
    let p = Conv2dParams { stride: 1, padding: 1 };
    assert_rank_err(t(&[8, 8, 3]).conv2d(&t(&[4, 3, 3, 3]), None, p), "conv2d", 4);
    assert_shape_err(t(&[1, 8, 8, 3]).conv2d(&t(&[4, 3, 3, 5]), None, p), "conv2d");
    assert_shape_err(t(&[1, 8, 8, 3]).conv2d(&t(&[4, 3, 3, 3]), Some(&t(&[5])), p), "conv2d");
    assert_shape_err(
        t(&[1, 8, 8, 3]).conv2d(&t(&[4, 3, 3, 3]), None, Conv2dParams { stride: 0, padding: 1 }),
        "conv2d",
    );
    assert_shape_err(t(&[1, 2, 2, 3]).conv2d(&t(&[4, 5, 5, 3]), None, Conv2dParams::default()), "conv2d");
}

#[test]
fn norms_attention_and_activations_reject_bad_shapes() {
    let (g, b) = (t(&[320]), t(&[320]));
    assert_shape_err(t(&[1, 4, 4, 320]).group_norm(7, &g, &b, 1e-5, false), "group_norm");
    assert_shape_err(t(&[1, 4, 4, 320]).group_norm(0, &g, &b, 1e-5, false), "group_norm");
    assert_shape_err(t(&[1, 4, 4, 320]).group_norm(32, &t(&[32]), &b, 1e-5, false), "group_norm");
    assert_shape_err(t(&[320]).group_norm(32, &g, &b, 1e-5, false), "group_norm");
    assert_shape_err(t(&[2, 10]).layer_norm(&t(&[10]), &t(&[9]), 1e-5), "layer_norm");
    assert_shape_err(t(&[]).softmax(), "softmax");
    assert_shape_err(t(&[2, 7]).geglu(), "geglu");
    let q = t(&[1, 16, 2, 8]);
    assert_shape_err(Tensor::attention(&q, &t(&[1, 7, 2, 4]), &t(&[1, 7, 2, 4]), 0.3), "attention");
    assert_shape_err(Tensor::attention(&q, &t(&[1, 7, 2, 8]), &t(&[1, 6, 2, 8]), 0.3), "attention");
    assert_shape_err(Tensor::attention(&q, &t(&[1, 0, 2, 8]), &t(&[1, 0, 2, 8]), 0.3), "attention");
    assert_rank_err(Tensor::attention(&t(&[16, 16]), &q, &q, 0.3), "attention", 4);
}

#[test]
fn binary_and_layout_ops_reject_bad_shapes() {
    let err = t(&[2, 3]).add(&t(&[2])).unwrap_err();
    assert!(
        err.to_string().contains("[2, 3]") && err.to_string().contains("[2]"),
        "names both shapes: {err}"
    );
    assert_shape_err(t(&[4, 3, 2]).mul(&t(&[3, 3])), "mul");
    assert_rank_err(t(&[4, 4, 3]).upsample_nearest2x(), "upsample_nearest2x", 4);
    assert_shape_err(Tensor::concat(&[], 0), "concat");
    assert_shape_err(Tensor::concat(&[&t(&[2, 3]), &t(&[3, 3])], 1), "concat");
    assert_shape_err(Tensor::concat(&[&t(&[2, 3]), &t(&[2, 3, 1])], 0), "concat");
    assert_shape_err(Tensor::concat(&[&t(&[2, 3])], 2), "concat");
    assert_shape_err(t(&[2, 3, 4]).permute(&[0, 1]), "permute");
    assert_shape_err(t(&[2, 3, 4]).permute(&[0, 1, 1]), "permute");
    assert_shape_err(t(&[2, 3, 4]).permute(&[0, 1, 3]), "permute");
    assert_shape_err(t(&[2, 3, 4]).narrow(1, 2, 2), "narrow");
    assert_shape_err(t(&[2, 3, 4]).narrow(3, 0, 1), "narrow");
    assert_shape_err(t(&[2, 3, 4]).narrow(1, usize::MAX, 2), "narrow");
    assert!(matches!(t(&[2, 3]).chunk(0, 1), Err(Error::Shape { op: "chunk", .. })));
}

#[test]
fn mixed_dtypes_are_rejected() {
    let p = Conv2dParams { stride: 1, padding: 1 };
    assert_dtype_err(t(&[4, 5]).linear(&t16(&[3, 5]), None), "linear");
    assert_dtype_err(t(&[4, 5]).linear(&t(&[3, 5]), Some(&t16(&[3]))), "linear");
    assert_dtype_err(t(&[2, 4, 5]).matmul(&t16(&[2, 5, 3])), "matmul");
    assert_dtype_err(t(&[1, 4, 4, 3]).conv2d(&t16(&[2, 3, 3, 3]), None, p), "conv2d");
    assert_dtype_err(t(&[1, 4, 4, 4]).group_norm(2, &t(&[4]), &t16(&[4]), 1e-5, true), "group_norm");
    assert_dtype_err(t(&[3, 4]).layer_norm(&t16(&[4]), &t(&[4]), 1e-5), "layer_norm");
    let q = t(&[1, 4, 2, 8]);
    assert_dtype_err(Tensor::attention(&q, &q, &t16(&[1, 4, 2, 8]), 0.3), "attention");
    assert_dtype_err(t(&[3, 4]).add(&t16(&[4])), "add");
    assert_dtype_err(t(&[3, 4]).mul(&t16(&[3, 4])), "mul");
    assert_dtype_err(Tensor::concat(&[&t(&[2, 3]), &t16(&[2, 3])], 0), "concat");
}

/// Empty tensors pass through without panicking.
#[test]
fn empty_tensors_are_fine() {
    assert_eq!(t(&[0, 5]).linear(&t(&[3, 5]), Some(&t(&[3]))).unwrap().dims(), [0, 3]);
    assert_eq!(t(&[2, 0]).softmax().unwrap().dims(), [2, 0]);
    assert_eq!(
        t(&[0, 4, 4, 3]).conv2d(&t(&[2, 3, 3, 3]), None, Conv2dParams::default()).unwrap().dims(),
        [0, 2, 2, 2]
    );
    assert_eq!(t(&[1, 0, 2, 8]).gelu().unwrap().dims(), [1, 0, 2, 8]);
    assert_eq!(
        Tensor::attention(&t(&[1, 0, 2, 8]), &t(&[1, 3, 2, 8]), &t(&[1, 3, 2, 8]), 1.0).unwrap().dims(),
        [1, 0, 2, 8]
    );
    assert_eq!(t(&[0, 2, 2, 4]).upsample_nearest2x().unwrap().dims(), [0, 4, 4, 4]);
    assert_eq!(t(&[2, 0, 3]).permute(&[2, 1, 0]).unwrap().dims(), [3, 0, 2]);
    assert_eq!(t(&[1, 3, 3, 4]).group_norm(2, &t(&[4]), &t(&[4]), 1e-5, false).unwrap().dims(), [1, 3, 3, 4]);
    assert_eq!(t(&[2, 0, 4]).layer_norm(&t(&[4]), &t(&[4]), 1e-5).unwrap().dims(), [2, 0, 4]);
    assert_eq!(t(&[3, 0]).geglu().unwrap().dims(), [3, 0]);
    assert_eq!(Tensor::concat(&[&t(&[0, 3]), &t(&[0, 2])], 1).unwrap().dims(), [0, 5]);
    assert_eq!(Tensor::concat(&[&t(&[2, 0]), &t(&[2, 0])], 0).unwrap().dims(), [4, 0]);
    assert_eq!(t(&[0, 4]).narrow(1, 1, 2).unwrap().dims(), [0, 2]);
    assert_eq!(t(&[2, 3]).add(&t(&[0, 1, 3])).unwrap().dims(), [0, 2, 3]);
    assert_eq!(
        Tensor::timestep_embedding(&[], 8, Default::default(), DType::F16, kiln_runtime::Device::Cpu)
            .unwrap()
            .dims(),
        [0, 8]
    );
}

/// Every combination of tiny sizes, zeros included, gives a result or a typed error.
#[test]
fn tiny_and_degenerate_shapes_never_panic() {
    let sizes = [0, 1, 2, 3];
    for &n in &sizes[..2] {
        for &h in &sizes {
            for &w in &sizes {
                for &cin in &sizes {
                    for &cout in &sizes[..3] {
                        for &k in &sizes {
                            for &stride in &sizes[..3] {
                                for &padding in &sizes[..3] {
                                    let r = t(&[n, h, w, cin]).conv2d(
                                        &t(&[cout, k, k, cin]),
                                        None,
                                        Conv2dParams { stride, padding },
                                    );
                                    assert!(matches!(r, Ok(_) | Err(Error::Shape { .. })), "conv2d: {r:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let shapes: Vec<Vec<usize>> =
        [vec![], vec![0], vec![1], vec![3], vec![2, 1], vec![0, 3], vec![2, 3], vec![1, 2, 3], vec![3, 0, 1]]
            .into_iter()
            .collect();
    for a in &shapes {
        for b in &shapes {
            let r = t(a).add(&t(b));
            assert!(matches!(r, Ok(_) | Err(Error::Shape { .. })), "add {a:?} {b:?}: {r:?}");
            let r = Tensor::concat(&[&t(a), &t(b)], 0);
            assert!(matches!(r, Ok(_) | Err(Error::Shape { .. })), "concat {a:?} {b:?}: {r:?}");
        }
        for groups in 0..3 {
            let c = a.last().copied().unwrap_or(0);
            let r = t(a).group_norm(groups, &t(&[c]), &t(&[c]), 1e-5, true);
            assert!(matches!(r, Ok(_) | Err(Error::Shape { .. })), "group_norm {a:?} {groups}: {r:?}");
        }
        for f in [Tensor::softmax, Tensor::gelu, Tensor::silu, Tensor::geglu] {
            assert!(matches!(f(&t(a)), Ok(_) | Err(Error::Shape { .. })), "unary op on {a:?}");
        }
        for dim in 0..3 {
            for chunks in 0..3 {
                assert!(matches!(t(a).chunk(chunks, dim), Ok(_) | Err(Error::Shape { .. })), "chunk {a:?}");
            }
        }
    }
    for m in 0..3 {
        for k in 0..3 {
            for n in 0..3 {
                let r = t(&[m, k]).linear(&t(&[n, k]), Some(&t(&[n])));
                assert_eq!(r.unwrap().to_vec_f32().unwrap().len(), m * n);
                let r = t(&[2, m, k]).matmul(&t(&[2, k, n]));
                assert_eq!(r.unwrap().dims(), [2, m, n]);
                let r = t(&[m, n, k]).layer_norm(&t(&[k]), &t(&[k]), 1e-5);
                assert_eq!(r.unwrap().dims(), [m, n, k]);
            }
        }
    }
    for &(b, lq, lk, h, d) in
        &[(0, 1, 1, 1, 1), (1, 0, 1, 1, 1), (1, 1, 1, 0, 1), (1, 1, 1, 1, 0), (2, 3, 1, 2, 1)]
    {
        let r = Tensor::attention(&t(&[b, lq, h, d]), &t(&[b, lk, h, d]), &t(&[b, lk, h, d]), 1.0);
        assert!(r.is_ok(), "attention {:?}: {r:?}", (b, lq, lk, h, d));
    }
}

/// Causal attention needs as many keys as queries; anything else names the shapes.
#[test]
fn causal_attention_with_unequal_lengths_is_a_shape_error() {
    let (q, k) = (t(&[1, 3, 2, 4]), t(&[1, 5, 2, 4]));
    let err = Tensor::causal_attention(&q, &k, &k, 0.5).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "causal_attention", .. }), "{err}");
    assert!(err.to_string().contains("Lk = Lq"), "{err}");
}
