//! One launch each of the flash-attention, conv and group-norm kernels at an SDXL shape, for
//! the software GPU's profile counters (or a profiler on a real GPU):
//!
//! ```sh
//! KILN_SOFTGPU_PROFILE=1 KILN_SOFTGPU_SAMPLE=16 KILN_SOFTGPU_INITCHECK=0 \
//!     cargo run --release -p kiln-benches --features cuda --example kernel_counters
//! ```
//!
//! With `KILN_SOFTGPU_SAMPLE` the software GPU runs 16 CTAs of each grid and scales the counts;
//! the outputs of the other CTAs are not written, which is why the written-bytes check is off.

#[path = "../benches/cuda_common/mod.rs"]
#[allow(dead_code)]
mod cuda_common;

use half::bf16;
use kiln_kernels::attention::{AttentionDims, AttentionKernel, launch_flash_attention};
use kiln_kernels::conv::{ConvDims, ConvKernel, launch_conv2d};
use kiln_kernels::norm::{GroupNormDims, GroupNormFunctions, NormKernel, NormOp, launch_group_norm};
use kiln_kernels::{Family, KernelDType};

fn main() {
    let gpu = match cuda_common::open_gpu() {
        Ok(g) => g,
        Err(why) => {
            println!("kernel_counters: no GPU: {why}");
            return;
        }
    };
    let s = &gpu.stream;

    // SDXL self-attention at the 64x64 level: 2 x 10 heads x 4096 tokens, head dim 64.
    let dims = AttentionDims {
        batch: 2,
        heads: 10,
        len_q: 4096,
        len_k: 4096,
        head_dim: 64,
        scale: 0.125,
        causal: false,
    };
    let kernel = AttentionKernel::for_head_dim(KernelDType::BF16, 64).expect("d64 kernel");
    let func = gpu.modules.function(Family::Attention, &kernel.entry()).expect("attention entry");
    let (q, k, v) = (
        cuda_common::random_bf16(s, dims.q_len().unwrap(), 1),
        cuda_common::random_bf16(s, dims.kv_len().unwrap(), 2),
        cuda_common::random_bf16(s, dims.kv_len().unwrap(), 3),
    );
    let mut o = cuda_common::zeros::<bf16>(s, dims.q_len().unwrap());
    println!("flash attention {dims:?}");
    launch_flash_attention(s, &func, &q, &k, &v, &mut o, dims).expect("attention launch");
    s.synchronize().expect("attention");

    // The 3x3 conv of SDXL's 64x64 resnet blocks: 2 x 64 x 64 x 640 -> 640.
    let d = ConvDims { n: 2, h: 64, w: 64, cin: 640, cout: 640, kh: 3, kw: 3, stride: 1, pad: 1 };
    let kernel = ConvKernel::select(KernelDType::BF16, &d);
    let func = gpu.modules.function(Family::Conv, &kernel.entry()).expect("conv entry");
    let (x, w, bias) = (
        cuda_common::random_bf16(s, d.input_len(), 4),
        cuda_common::random_bf16(s, d.weight_len(), 5),
        cuda_common::random_bf16(s, d.cout, 6),
    );
    let mut y = cuda_common::zeros::<bf16>(s, d.output_len());
    println!("conv {kernel} {d:?}");
    let bv = bias.as_view();
    launch_conv2d(s, &func, kernel, &x.as_view(), &w.as_view(), Some(&bv), None, &mut y.as_view_mut(), d)
        .expect("conv launch");
    s.synchronize().expect("conv");

    // Group norm + SiLU of the same activation: 32 groups.
    let f = |op| gpu.modules.norm(NormKernel { op, dtype: KernelDType::BF16 }).expect("norm kernel");
    let (stats, finalize, apply) =
        (f(NormOp::GroupNormStats), f(NormOp::GroupNormFinalize), f(NormOp::GroupNormApply));
    let funcs = GroupNormFunctions { stats: &stats, finalize: &finalize, apply: &apply };
    let dims = GroupNormDims { n: 2, l: 64 * 64, c: 640, groups: 32, eps: 1e-5, silu: true };
    let len = dims.n * dims.l * dims.c;
    let (x, gamma, beta) = (
        cuda_common::random_bf16(s, len, 7),
        cuda_common::random_bf16(s, 640, 8),
        cuda_common::random_bf16(s, 640, 9),
    );
    let (mut y, mut ws) =
        (cuda_common::zeros::<bf16>(s, len), cuda_common::zeros::<f32>(s, dims.workspace_len()));
    println!("group norm + SiLU {dims:?}");
    let (xv, gv, bv) = (x.as_view(), gamma.as_view(), beta.as_view());
    launch_group_norm(s, funcs, &xv, &gv, &bv, &mut y.as_view_mut(), &mut ws.as_view_mut(), dims)
        .expect("group norm");
    s.synchronize().expect("group norm");
}
