//! GPU benches of the norm kernels (`kernels/cuda/norm.cu`) at SDXL shapes, bf16, printing
//! GB/s from the bytes the op must move at least (read x once, write y once).
//!
//! Run on a machine with an NVIDIA GPU: `cargo bench -p kiln-benches --features cuda --bench
//! cuda_norm`. Without the `cuda` feature, a CUDA driver or a device it prints why and exits.

#[cfg(feature = "cuda")]
mod cuda_common;

#[cfg(feature = "cuda")]
mod gpu {
    use criterion::Criterion;
    use half::bf16;
    use kiln_benches::{Work, random_f32};
    use kiln_kernels::KernelDType;
    use kiln_kernels::norm::{
        GroupNormDims, GroupNormFunctions, LayerNormDims, NormKernel, NormOp, SoftmaxDims, launch_group_norm,
        launch_layer_norm, launch_softmax, launch_softmax_from_f32,
    };

    use super::cuda_common::{Gpu, case, random_bf16, zeros};

    pub fn run(c: &mut Criterion, gpu: &Gpu) {
        let s = &gpu.stream;
        let f = |op| gpu.modules.norm(NormKernel { op, dtype: KernelDType::BF16 }).expect("norm kernel");
        let (stats, finalize, apply, ln, softmax, softmax_f32) = (
            f(NormOp::GroupNormStats),
            f(NormOp::GroupNormFinalize),
            f(NormOp::GroupNormApply),
            f(NormOp::LayerNorm),
            f(NormOp::Softmax),
            f(NormOp::SoftmaxFromF32),
        );
        let funcs = GroupNormFunctions { stats: &stats, finalize: &finalize, apply: &apply };

        // The UNet's group norms: 32 groups, SiLU fused (the resnet blocks' norm1/norm2).
        for (h, ch) in [(128, 320), (64, 640), (32, 1280)] {
            let dims = GroupNormDims { n: 2, l: h * h, c: ch, groups: 32, eps: 1e-5, silu: true };
            let len = dims.n * dims.l * ch;
            let (x, gamma, beta) = (random_bf16(s, len, 1), random_bf16(s, ch, 2), random_bf16(s, ch, 3));
            let (mut y, mut ws) = (zeros::<bf16>(s, len), zeros::<f32>(s, dims.workspace_len()));
            let work = Work::Bytes((2 * len * 2) as u64);
            case(c, s, "cuda group_norm+silu bf16", &format!("2x{h}x{h}x{ch}"), work, || {
                let (xv, gv, bv) = (x.as_view(), gamma.as_view(), beta.as_view());
                launch_group_norm(s, funcs, &xv, &gv, &bv, &mut y.as_view_mut(), &mut ws.as_view_mut(), dims)
                    .expect("group norm launch");
            });
        }

        // The transformer blocks' layer norms: [B * tokens, C].
        for (rows, ch) in [(2 * 4096, 640), (2 * 1024, 1280)] {
            let len = rows * ch;
            let (x, gamma, beta) = (random_bf16(s, len, 4), random_bf16(s, ch, 5), random_bf16(s, ch, 6));
            let mut y = zeros::<bf16>(s, len);
            let dims = LayerNormDims { rows, c: ch, eps: 1e-5 };
            case(
                c,
                s,
                "cuda layer_norm bf16",
                &format!("{rows}x{ch}"),
                Work::Bytes((2 * len * 2) as u64),
                || {
                    let (xv, gv, bv) = (x.as_view(), gamma.as_view(), beta.as_view());
                    launch_layer_norm(s, &ln, &xv, &gv, &bv, &mut y.as_view_mut(), dims)
                        .expect("layer norm launch");
                },
            );
        }

        // Row softmax: the unfused attention's score chunks (the VAE's 4096 and 16384 tokens)
        // and CLIP-sized rows of 77.
        for (rows, cols) in [(4096, 4096), (2048, 16384), (2 * 20 * 77, 77)] {
            let len = rows * cols;
            let x = random_bf16(s, len, 7);
            let mut y = zeros::<bf16>(s, len);
            let dims = SoftmaxDims { rows, c: cols, causal: None };
            case(
                c,
                s,
                "cuda softmax bf16",
                &format!("{rows}x{cols}"),
                Work::Bytes((2 * len * 2) as u64),
                || {
                    launch_softmax(s, &softmax, &x.as_view(), &mut y.as_view_mut(), dims)
                        .expect("softmax launch");
                },
            );
        }

        // The unfused attention's step: f32 scores to bf16 probabilities and their remainders
        // (the VAE's score chunks at 4096 and 16384 tokens): read 4 bytes, write 2 + 2.
        for (rows, cols) in [(4096, 4096), (2048, 16384)] {
            let len = rows * cols;
            let x = s.clone_htod(&random_f32(len, 8)).expect("device allocation");
            let (mut y, mut y_lo) = (zeros::<bf16>(s, len), zeros::<bf16>(s, len));
            let dims = SoftmaxDims { rows, c: cols, causal: None };
            case(
                c,
                s,
                "cuda softmax f32->bf16 hi+lo",
                &format!("{rows}x{cols}"),
                Work::Bytes((len * (4 + 2 + 2)) as u64),
                || {
                    let mut lo = y_lo.as_view_mut();
                    launch_softmax_from_f32(
                        s,
                        &softmax_f32,
                        &x.as_view(),
                        &mut y.as_view_mut(),
                        Some(&mut lo),
                        dims,
                    )
                    .expect("softmax launch");
                },
            );
        }
    }
}

fn main() {
    #[cfg(feature = "cuda")]
    match cuda_common::open_gpu() {
        Ok(gpu) => {
            let mut c = criterion::Criterion::default().configure_from_args();
            gpu::run(&mut c, &gpu);
            c.final_summary();
        }
        Err(why) => println!("cuda_norm skipped: {why}"),
    }
    #[cfg(not(feature = "cuda"))]
    println!(
        "cuda_norm skipped: built without the `cuda` feature (cargo bench -p kiln-benches --features cuda)"
    );
}
