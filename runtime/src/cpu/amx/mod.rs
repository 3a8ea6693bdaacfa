//! bf16 matrix products on Intel AMX tiles (Sapphire Rapids and later), for bf16 compute.
//!
//! One `TDPBF16PS` multiplies a 16x32 bf16 tile by a 32x16 one into 16x16 f32 accumulators:
//! 16k FLOPs per instruction, about 14x what the f32 AVX-512 FMAs reach per core here. The
//! operands of kiln's bf16 compute already are bf16, so the tiles read them as stored and
//! accumulate in f32, as the f32 path does after widening them: only the order and rounding of
//! the f32 sums differ.
//!
//! Every output row is summed over K in a fixed order that depends on `(n, k)` only, so a row's
//! result does not depend on how many rows share the product (batch invariance).
//!
//! Used when the CPU has AMX-BF16, Linux grants the tile state (`arch_prctl`), and the
//! environment does not say `KILN_CPU_AMX=0`; everything else takes the f32 `gemm` path.

mod gemm;
#[cfg(target_arch = "x86_64")]
mod tiles;
#[cfg(not(target_arch = "x86_64"))]
#[path = "tiles_none.rs"]
mod tiles;

pub(crate) use gemm::{ASegment, PackedB, gemm_bf16};

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// Whether bf16 products run on AMX tiles in this process (decided once).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        let off = std::env::var("KILN_CPU_AMX").is_ok_and(|v| matches!(v.trim(), "0" | "off" | "false"));
        !off && tiles::request_tile_state()
    })
}

/// FLOPs of one [`tiles::Tiles::spin`] round: four 16x32 by 32x16 products.
const SPIN_FLOP: f64 = 4.0 * 2.0 * 16.0 * 16.0 * 32.0;

/// The bf16 tile products' peak over every rayon thread (FLOP per second), measured like the
/// f32 FMA peak (best of five rounds over about `duration`), or `None` without AMX.
pub fn measure_tile_peak(duration: Duration) -> Option<f64> {
    if !enabled() {
        return None;
    }
    let spin = |rounds: u64| {
        // SAFETY: AMX is enabled (checked above).
        let mut tiles = unsafe { tiles::Tiles::load() };
        tiles.spin(rounds);
        rounds as f64 * SPIN_FLOP
    };
    let per_round = duration / 5;
    let mut rounds = 1u64 << 10;
    loop {
        let t = Instant::now();
        spin(rounds);
        if t.elapsed() >= per_round / 4 || rounds >= 1 << 36 {
            break;
        }
        rounds *= 2;
    }
    let threads = rayon::current_num_threads();
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let flop: f64 = (0..threads).into_par_iter().map(|_| spin(rounds)).sum();
        best = best.max(flop / t.elapsed().as_secs_f64());
    }
    Some(best)
}
