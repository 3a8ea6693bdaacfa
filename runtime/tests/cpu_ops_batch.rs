//! Batch invariance of the CPU ops: image `i` of a batch must be bitwise what that image gives
//! alone, for every op the models use, so that `kiln render` gives the same pixels at any
//! `--batch-size`. The image alone runs on one rayon thread and the batches on three, so the
//! result must not depend on the thread count either.
//!
//! Shapes are those of the real models' small and odd cases (the demo model's 8-32 channels,
//! CLIP's 77 tokens, a time embedding's single row, K above 512 with N at most 64, where `gemm`
//! changes its blocking by the row count) plus deliberately odd ones.

mod common;

use common::{DTYPES, normal, rng, tensor};
use kiln_runtime::ops::{Conv2dParams, TimestepEmbeddingParams};
use kiln_runtime::{DType, Device, Tensor};
use rand::rngs::StdRng;

/// The batch sizes compared with a batch of one.
const BATCHES: [usize; 3] = [2, 3, 8];
/// Images drawn per case: the largest batch.
const IMAGES: usize = 8;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

/// A random `[IMAGES, ..shape]` input of `dtype`.
fn images(rng: &mut StdRng, shape: &[usize], dtype: DType) -> Tensor {
    let shape = [&[IMAGES], shape].concat();
    tensor(normal(rng, shape.iter().product(), 0.2, 1.5), &shape, dtype).0
}

/// A random weight of `shape` and `dtype`, scaled so activations stay near unit size.
fn weight(rng: &mut StdRng, shape: &[usize], fan_in: usize, dtype: DType) -> Tensor {
    let std = 1.0 / (fan_in as f32).sqrt();
    tensor(normal(rng, shape.iter().product(), 0.0, std), shape, dtype).0
}

/// Checks that `op` on the first `b` images of `inputs` (each `[IMAGES, ..]`) gives, for each
/// image, bitwise what `op` gives on that image alone, for every `b` in [`BATCHES`].
fn assert_batch_invariant(what: &str, inputs: &[&Tensor], op: impl Fn(&[Tensor]) -> Tensor + Sync) {
    let first = |start: usize, b: usize| -> Vec<Tensor> {
        inputs.iter().map(|t| t.narrow(0, start, b).unwrap()).collect()
    };
    let alone: Vec<Vec<f32>> =
        pool(1).install(|| (0..IMAGES).map(|i| op(&first(i, 1)).to_vec_f32().unwrap()).collect());
    let threads = pool(3);
    for b in BATCHES {
        let out = threads.install(|| op(&first(0, b)));
        assert_eq!(out.dims()[0], b, "{what}: batch dimension");
        let got = out.to_vec_f32().unwrap();
        let per_image = got.len() / b;
        for (i, (got, want)) in got.chunks_exact(per_image).zip(&alone).enumerate() {
            let differ = got.iter().zip(want).filter(|(g, w)| g.to_bits() != w.to_bits()).count();
            if let Some(j) = got.iter().zip(want).position(|(g, w)| g.to_bits() != w.to_bits()) {
                panic!(
                    "{what}: image {i} of a batch of {b} differs from it alone in {differ} of {per_image} \
                     values; first at {j}: {:e} vs {:e}",
                    got[j], want[j]
                );
            }
        }
    }
}

#[test]
fn linear_is_batch_invariant() {
    let mut rng = rng(1);
    // (tokens per image, K, N): a time embedding (one row per image), CLIP-like 77 tokens at
    // the demo's widths, K > 512 with N <= 64, N = 1, K <= 2 and odd sizes.
    let cases = [
        (1, 320, 1280),
        (77, 16, 48),
        (77, 32, 128),
        (24, 1280, 33),
        (64, 8, 8),
        (13, 7, 3),
        (300, 40, 5),
        (9, 33, 1),
        (5, 2, 9),
    ];
    for dtype in DTYPES {
        for (l, k, n) in cases {
            let x = images(&mut rng, &[l, k], dtype);
            let w = weight(&mut rng, &[n, k], k, dtype);
            let b = weight(&mut rng, &[n], 1, dtype);
            assert_batch_invariant(&format!("linear [{l},{k}]x[{n},{k}]^T+b {dtype}"), &[&x], |t| {
                t[0].linear(&w, Some(&b)).unwrap()
            });
            assert_batch_invariant(&format!("linear [{l},{k}]x[{n},{k}]^T {dtype}"), &[&x], |t| {
                t[0].linear(&w, None).unwrap()
            });
        }
    }
}

#[test]
fn conv2d_is_batch_invariant() {
    let mut rng = rng(2);
    // ([H, W, Cin], Cout, kernel, stride, padding): the demo UNet's and VAE's convs, a stride-2
    // downsample of odd size, a 1x1 shortcut, K = 9 Cin > 512 with Cout <= 64, and a VAE-like
    // 128-channel conv whose im2col is cut into chunks across image boundaries in a batch.
    let cases = [
        ([16, 16, 4], 8, 3, 1, 1),
        ([9, 7, 3], 5, 3, 2, 1),
        ([16, 12, 16], 8, 1, 1, 0),
        ([12, 10, 64], 32, 3, 1, 1),
        ([8, 8, 32], 4, 3, 1, 1),
        ([48, 40, 128], 3, 3, 1, 1),
    ];
    for (i, ([h, w, cin], cout, k, stride, padding)) in cases.into_iter().enumerate() {
        // bf16 as well: the wider ones run on AMX tiles where the CPU has them.
        let dtypes: &[DType] = if i < 2 { &DTYPES } else { &[DType::F32, DType::BF16] };
        for &dtype in dtypes {
            let x = images(&mut rng, &[h, w, cin], dtype);
            let wt = weight(&mut rng, &[cout, k, k, cin], k * k * cin, dtype);
            let b = weight(&mut rng, &[cout], 1, dtype);
            let what = format!("conv2d {k}x{k} s{stride} p{padding} [{h},{w},{cin}]->{cout} {dtype}");
            assert_batch_invariant(&what, &[&x], |t| {
                t[0].conv2d(&wt, Some(&b), Conv2dParams { stride, padding }).unwrap()
            });
        }
    }
}

#[test]
fn attention_is_batch_invariant() {
    let mut rng = rng(3);
    // (Lq, Lk, H, D, causal): the demo UNet's self-attention (32x32 latents, 2 heads of 16) and
    // cross-attention on 77 tokens, CLIP's causal self-attention, SD-like head dims, odd sizes.
    let cases = [
        (1024, 1024, 2, 16, false),
        (1024, 77, 2, 16, false),
        (77, 77, 2, 8, true),
        (256, 256, 1, 40, false),
        (300, 77, 2, 64, false),
        (37, 11, 3, 5, false),
        (13, 13, 1, 3, true),
    ];
    for (lq, lk, h, d, causal) in cases {
        for dtype in DTYPES {
            let q = images(&mut rng, &[lq, h, d], dtype);
            let k = images(&mut rng, &[lk, h, d], dtype);
            let v = images(&mut rng, &[lk, h, d], dtype);
            let scale = 1.0 / (d as f32).sqrt();
            let what = format!("attention Lq{lq} Lk{lk} H{h} D{d} causal {causal} {dtype}");
            assert_batch_invariant(&what, &[&q, &k, &v], |t| {
                if causal {
                    Tensor::causal_attention(&t[0], &t[1], &t[2], scale).unwrap()
                } else {
                    Tensor::attention(&t[0], &t[1], &t[2], scale).unwrap()
                }
            });
        }
    }
}

#[test]
fn norms_and_softmax_are_batch_invariant() {
    let mut rng = rng(4);
    // ([positions.., C], groups): the demo's 4 groups at 128x128 latents (several rayon tasks
    // per image), SD's 32 groups of 320 channels, odd sizes.
    let cases: [(&[usize], usize); 4] =
        [(&[128, 128, 8], 4), (&[8, 8, 320], 32), (&[7, 6], 3), (&[3000, 16], 4)];
    for dtype in DTYPES {
        for &(shape, groups) in &cases {
            let c = *shape.last().unwrap();
            let x = images(&mut rng, shape, dtype);
            let gamma = weight(&mut rng, &[c], 1, dtype);
            let beta = weight(&mut rng, &[c], 1, dtype);
            let what = |op: &str| format!("{op} {shape:?} {dtype}");
            for silu in [false, true] {
                assert_batch_invariant(&what(&format!("group_norm {groups} silu {silu}")), &[&x], |t| {
                    t[0].group_norm(groups, &gamma, &beta, 1e-5, silu).unwrap()
                });
            }
            assert_batch_invariant(&what("layer_norm"), &[&x], |t| {
                t[0].layer_norm(&gamma, &beta, 1e-5).unwrap()
            });
            assert_batch_invariant(&what("softmax"), &[&x], |t| t[0].softmax().unwrap());
        }
    }
}

#[test]
fn matmul_is_batch_invariant() {
    let mut rng = rng(5);
    for (m, k, n) in [(77, 16, 77), (64, 600, 40), (5, 3, 1)] {
        let a = images(&mut rng, &[m, k], DType::F32);
        let b = images(&mut rng, &[k, n], DType::F32);
        assert_batch_invariant(&format!("matmul [{m},{k}]x[{k},{n}]"), &[&a, &b], |t| {
            t[0].matmul(&t[1]).unwrap()
        });
    }
}

#[test]
fn element_wise_and_layout_ops_are_batch_invariant() {
    let mut rng = rng(6);
    for dtype in DTYPES {
        let x = images(&mut rng, &[9, 7, 16], dtype);
        let y = images(&mut rng, &[9, 7, 16], dtype);
        let per_image = images(&mut rng, &[1, 1, 16], dtype); // a time embedding added per image
        let per_channel = weight(&mut rng, &[16], 1, dtype);
        let what = |op: &str| format!("{op} {dtype}");
        assert_batch_invariant(&what("gelu"), &[&x], |t| t[0].gelu().unwrap());
        assert_batch_invariant(&what("silu"), &[&x], |t| t[0].silu().unwrap());
        assert_batch_invariant(&what("geglu"), &[&x], |t| t[0].geglu().unwrap());
        assert_batch_invariant(&what("add"), &[&x, &y], |t| t[0].add(&t[1]).unwrap());
        assert_batch_invariant(&what("add per image"), &[&x, &per_image], |t| t[0].add(&t[1]).unwrap());
        assert_batch_invariant(&what("mul per channel"), &[&x], |t| t[0].mul(&per_channel).unwrap());
        assert_batch_invariant(&what("affine"), &[&x], |t| t[0].affine(0.7, -0.2).unwrap());
        assert_batch_invariant(&what("upsample"), &[&x], |t| t[0].upsample_nearest2x().unwrap());
        assert_batch_invariant(&what("concat"), &[&x, &y], |t| Tensor::concat(&[&t[0], &t[1]], 3).unwrap());
        assert_batch_invariant(&what("permute"), &[&x], |t| t[0].permute(&[0, 2, 1, 3]).unwrap());
    }
}

#[test]
fn timestep_embedding_is_batch_invariant() {
    let timesteps: Vec<f32> = common::uniform(&mut rng(7), IMAGES, 0.0, 999.0);
    let params = TimestepEmbeddingParams::default();
    let embed = |t: &[f32]| {
        Tensor::timestep_embedding(t, 320, params, DType::F32, Device::Cpu).unwrap().to_vec_f32().unwrap()
    };
    let all = embed(&timesteps);
    for (i, t) in timesteps.iter().enumerate() {
        let alone = embed(&[*t]);
        assert!(alone.iter().zip(&all[i * 320..]).all(|(a, b)| a.to_bits() == b.to_bits()), "timestep {i}");
    }
}
