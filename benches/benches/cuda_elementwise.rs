//! GPU benches of the elementwise kernels (`kernels/cuda/elementwise.cu`) at SDXL shapes,
//! bf16, printing GB/s from the bytes each op must read and write at least.
//!
//! Run on a machine with an NVIDIA GPU: `cargo bench -p kiln-benches --features cuda --bench
//! cuda_elementwise`. Without the `cuda` feature, a CUDA driver or a device it prints why and
//! exits.

#[cfg(feature = "cuda")]
mod cuda_common;

#[cfg(feature = "cuda")]
mod gpu {
    use criterion::Criterion;
    use half::bf16;
    use kiln_benches::Work;
    use kiln_kernels::KernelDType;
    use kiln_kernels::elementwise::{
        CastType, ElementwiseKernel, ElementwiseOp, PermutePlan, PermuteWidth, launch_binary, launch_cast,
        launch_concat, launch_geglu, launch_permute, launch_silu, launch_upsample_nearest2x, permute_kernel,
    };

    use super::cuda_common::{Gpu, case, random_bf16, zeros};

    /// Bytes of `n` bf16 values.
    fn b16(n: usize) -> u64 {
        2 * n as u64
    }

    pub fn run(c: &mut Criterion, gpu: &Gpu) {
        let s = &gpu.stream;
        let op =
            |op| gpu.modules.elementwise(ElementwiseKernel::Op { op, dtype: KernelDType::BF16 }).unwrap();
        const G: &str = "cuda elementwise bf16";

        // GEGLU of the 64x64 level's feed-forward: [2 * 4096, 2 * 2560] -> [2 * 4096, 2560].
        let (rows, hidden) = (2 * 4096, 2560);
        let x = random_bf16(s, rows * 2 * hidden, 1);
        let mut y = zeros::<bf16>(s, rows * hidden);
        let f = op(ElementwiseOp::Geglu);
        case(c, s, G, "geglu 8192x5120", Work::Bytes(b16(3 * rows * hidden)), || {
            launch_geglu(s, &f, &x.as_view(), &mut y.as_view_mut(), rows, hidden).unwrap();
        });

        // SiLU and the adds of a resnet block at 2x128x128x320.
        let shape = [2, 128, 128, 320];
        let len: usize = shape.iter().product();
        let (a, b) = (random_bf16(s, len, 2), random_bf16(s, len, 3));
        let (bias, temb) = (random_bf16(s, 320, 4), random_bf16(s, 2 * 320, 5));
        let mut out = zeros::<bf16>(s, len);
        let f = op(ElementwiseOp::Silu);
        case(c, s, G, "silu 2x128x128x320", Work::Bytes(b16(2 * len)), || {
            launch_silu(s, &f, &a.as_view(), &mut out.as_view_mut()).unwrap();
        });
        let f = op(ElementwiseOp::Add);
        case(c, s, G, "add same shape 2x128x128x320", Work::Bytes(b16(3 * len)), || {
            launch_binary(s, &f, (&a.as_view(), &shape), (&b.as_view(), &shape), &mut out.as_view_mut())
                .unwrap();
        });
        case(c, s, G, "add [C] bias 2x128x128x320", Work::Bytes(b16(2 * len)), || {
            launch_binary(s, &f, (&a.as_view(), &shape), (&bias.as_view(), &[320]), &mut out.as_view_mut())
                .unwrap();
        });
        case(c, s, G, "add [N,1,1,C] temb 2x128x128x320", Work::Bytes(b16(2 * len)), || {
            let t = (&temb.as_view(), &[2, 1, 1, 320][..]);
            launch_binary(s, &f, (&a.as_view(), &shape), t, &mut out.as_view_mut()).unwrap();
        });

        // Upsampling and the skip concatenation at the 64x64 level.
        let small = 2 * 64 * 64 * 640;
        let (u, v) = (random_bf16(s, small, 6), random_bf16(s, small, 7));
        let mut big = zeros::<bf16>(s, 4 * small);
        let f = op(ElementwiseOp::UpsampleNearest2x);
        case(c, s, G, "upsample2x 2x64x64x640", Work::Bytes(b16(5 * small)), || {
            launch_upsample_nearest2x(s, &f, &u.as_view(), &mut big.as_view_mut(), [2, 64, 64, 640]).unwrap();
        });
        let mut cat = zeros::<bf16>(s, 2 * small);
        let f = op(ElementwiseOp::Concat);
        case(c, s, G, "concat 2x64x64x(640+640)", Work::Bytes(b16(4 * small)), || {
            let blocks = (2 * 64 * 64, 640, 640);
            launch_concat(s, &f, &u.as_view(), &v.as_view(), &mut cat.as_view_mut(), blocks).unwrap();
        });

        // The f32 -> bf16 cast of a latent-sized activation.
        let xf = zeros::<f32>(s, len);
        let f = gpu
            .modules
            .elementwise(ElementwiseKernel::Cast { from: CastType::F32, to: CastType::BF16 })
            .unwrap();
        case(c, s, G, "cast f32->bf16 2x128x128x320", Work::Bytes(6 * len as u64), || {
            launch_cast(s, &f, &xf.as_view(), &mut out.as_view_mut()).unwrap();
        });

        // Permutations (read and write every element once): NHWC -> NCHW of a UNet activation
        // (tiled kernel), NCHW -> NHWC of an RGB image (gather, 3 channels), and [B, L, H, D] ->
        // [B, H, L, D] (gather, 16-byte runs).
        for (label, dims, perm) in [
            ("permute NHWC->NCHW 2x128x128x320", [2, 128, 128, 320], [0, 3, 1, 2]),
            ("permute NCHW->NHWC 1x3x1024x1024", [1, 3, 1024, 1024], [0, 2, 3, 1]),
            ("permute BLHD->BHLD 2x4096x10x64", [2, 4096, 10, 64], [0, 2, 1, 3]),
        ] {
            let n: usize = dims.iter().product();
            let plan = PermutePlan::new(&dims, &perm).unwrap();
            let f = gpu.modules.elementwise(permute_kernel(&plan, PermuteWidth::B16)).unwrap();
            let x = random_bf16(s, n, 7);
            let mut y = zeros::<bf16>(s, n);
            let id = format!("{label} ({})", if plan.tiled() { "tiled" } else { "gather" });
            case(c, s, G, &id, Work::Bytes(b16(2 * n)), || {
                launch_permute(s, &f, &x.as_view(), &mut y.as_view_mut(), &plan).unwrap();
            });
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
        Err(why) => println!("cuda_elementwise skipped: {why}"),
    }
    #[cfg(not(feature = "cuda"))]
    println!(
        "cuda_elementwise skipped: built without the `cuda` feature (cargo bench -p kiln-benches --features cuda)"
    );
}
