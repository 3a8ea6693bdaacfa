//! The machine's measured f32 fused multiply-add peak: the ceiling `kiln bench` and the benches
//! report achieved GFLOP/s against.
//!
//! A tight loop of independent FMAs on the widest vectors the CPU has (AVX-512, else AVX2+FMA,
//! detected at run time; a scalar loop elsewhere) runs on every rayon thread at once, so the
//! figure includes what the cores really sustain together (turbo limits, shared hosts).

use std::time::{Duration, Instant};

use rayon::prelude::*;

/// A measured FMA peak.
#[derive(Clone, Copy, Debug)]
pub struct FmaPeak {
    /// f32 FLOP per second over all threads (an FMA counts 2).
    pub flops: f64,
    /// The instruction set the loop ran on (`avx512f`, `avx2+fma`, `scalar`).
    pub isa: &'static str,
    /// Threads that ran the loop at once.
    pub threads: usize,
}

/// Runs the FMA loop on every rayon thread for about `duration` and returns the best of
/// several rounds (the peak is a ceiling: the fastest round is the one least disturbed).
pub fn measure_fma_peak(duration: Duration) -> FmaPeak {
    let threads = rayon::current_num_threads();
    let isa = isa();
    let rounds = 5;
    let per_round = duration / rounds;
    // Calibrate the iterations of one round on one thread.
    let mut iters = 1u64 << 16;
    loop {
        let t = Instant::now();
        std::hint::black_box(run_fma(isa, iters));
        if t.elapsed() >= per_round / 4 || iters >= 1 << 40 {
            break;
        }
        iters *= 2;
    }
    let mut best = 0.0f64;
    for _ in 0..rounds {
        let t = Instant::now();
        let flop: f64 = (0..threads).into_par_iter().map(|_| run_fma(isa, iters)).sum();
        best = best.max(flop / t.elapsed().as_secs_f64());
    }
    FmaPeak { flops: best, isa: isa.name(), threads }
}

#[derive(Clone, Copy)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Scalar,
}

impl Isa {
    fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512f",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2+fma",
            Isa::Scalar => "scalar",
        }
    }
}

fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

/// Runs `iters` rounds of the loop; returns the FLOPs done.
fn run_fma(isa: Isa, iters: u64) -> f64 {
    match isa {
        // SAFETY: the features were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::fma_avx512(iters) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::fma_avx2(iters) },
        Isa::Scalar => fma_scalar(iters),
    }
}

/// Independent accumulators per loop: enough to cover the FMA latency (4 cycles) on two ports.
const CHAINS: usize = 12;

fn fma_scalar(iters: u64) -> f64 {
    let mut acc = [1.0f32; CHAINS];
    let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
    for _ in 0..iters {
        for x in &mut acc {
            *x = x.mul_add(a, b);
        }
    }
    std::hint::black_box(acc);
    (iters * CHAINS as u64 * 2) as f64
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::CHAINS;

    #[target_feature(enable = "avx512f")]
    pub(super) fn fma_avx512(iters: u64) -> f64 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        std::hint::black_box(acc);
        (iters * CHAINS as u64 * 16 * 2) as f64
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fma_avx2(iters: u64) -> f64 {
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        std::hint::black_box(acc);
        (iters * CHAINS as u64 * 8 * 2) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_positive_and_names_its_instruction_set() {
        let p = measure_fma_peak(Duration::from_millis(50));
        assert!(p.flops > 1e8, "{p:?}");
        assert!(["avx512f", "avx2+fma", "scalar"].contains(&p.isa) && p.threads >= 1);
    }
}
