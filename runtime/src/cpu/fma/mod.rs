//! f32 matrix products on AVX-512 FMA registers, for f32 compute on CPUs without bf16 tiles.
//!
//! The `gemm` crate reaches 55-60% of the FMA peak inside kiln's models (2-core Ice Lake). This
//! kernel keeps an 8x48 tile of sums in registers, reads B from 48-column panels packed
//! once per product and A in place through `Segment`s, so a stride-1 convolution sums all
//! its taps in one product over the padded image (an implicit GEMM: no im2col, and no
//! read-modify-write of the output per tap).
//!
//! Every output element is one chain of fused multiply-adds over K in order, whatever the row
//! count, the blocking or the threads: a row's result depends on that row and B only (batch
//! invariance).
//!
//! Opt-in (`KILN_CPU_FMA=1`) on CPUs with AVX-512 F, for stride-1 convolutions: on the 2-core
//! Ice Lake machine it matched the `gemm` crate in the UNet and VAE benches but did not beat
//! it (benches/RESULTS.md, 2026-12-06), so `gemm` stays the default until the tile does.

mod gemm;
#[cfg(target_arch = "x86_64")]
mod kernel;
#[cfg(not(target_arch = "x86_64"))]
#[path = "kernel_none.rs"]
mod kernel;

pub(crate) use gemm::{Panels, Segment, gemm_packed};

use std::sync::OnceLock;

/// Whether stride-1 convolutions run on this module's kernel in this process: the CPU has
/// AVX-512 F and the environment says `KILN_CPU_FMA=1` (decided once).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        let on = std::env::var("KILN_CPU_FMA").is_ok_and(|v| matches!(v.trim(), "1" | "on" | "true"));
        on && available()
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
