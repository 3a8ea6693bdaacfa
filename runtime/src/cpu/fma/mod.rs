//! f32 matrix products on AVX-512 FMA registers: how f32 compute runs convolutions on CPUs
//! with AVX-512 F.
//!
//! The `gemm` crate reaches 55-60% of the FMA peak inside kiln's models (2-core Ice Lake). This
//! kernel keeps an 8x48 tile of sums in registers, reads B from 48-column panels packed once
//! per product and A in place through `Segment`s and `RowTile`s, so a convolution sums all its
//! taps in one product over the padded image (an implicit GEMM: no im2col, no read-modify-write
//! of the output per tap, no copy of the result) and adds its bias as it stores.
//!
//! Every output element is one chain of fused multiply-adds over K in order, whatever the row
//! count, the blocking or the threads: a row's result depends on that row and B only (batch
//! invariance).
//!
//! On by default where the CPU has AVX-512 F; `KILN_CPU_FMA=0` sends convolutions back to the
//! `gemm` crate. On the 2-core Ice Lake machine the tile ran the UNet's and the VAE's 3x3
//! convolutions faster than `gemm` (benches/RESULTS.md, 2026-12-06). Linear layers and attention
//! stay on `gemm`, which was faster there.

mod gemm;
#[cfg(target_arch = "x86_64")]
mod kernel;
#[cfg(not(target_arch = "x86_64"))]
#[path = "kernel_none.rs"]
mod kernel;

pub(crate) use gemm::{Panels, RowTile, Segment, gemm_packed};
pub(crate) use kernel::MR;

use std::sync::OnceLock;

/// Whether f32 convolutions (all but 1x1) run on this module's kernel in this process: the CPU
/// has AVX-512 F and the environment does not say `KILN_CPU_FMA=0` (decided once).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        let off = std::env::var("KILN_CPU_FMA").is_ok_and(|v| matches!(v.trim(), "0" | "off" | "false"));
        !off && available()
    })
}

/// Whether this CPU can run the kernel (AVX-512 F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
