//! Shared helpers for kiln's criterion benches.
//!
//! Criterion reports time and a throughput in elements or bytes per second; the benches also
//! print one explicit line per case with the rate in the unit that matters, `GFLOP/s` for
//! compute-bound ops (from a back-of-envelope FLOP count) or `GB/s` for memory-bound ones
//! (from the bytes the op must read and write at least), computed from the same timings
//! criterion measured ([`Samples`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_runtime::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The work one iteration of a bench does.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// Floating-point operations (a multiply-add counts 2).
    Flops(u64),
    /// Bytes read plus bytes written, at least.
    Bytes(u64),
}

impl Work {
    /// The rate of this much work done in `secs`, as `12.3 GFLOP/s` or `4.56 GB/s`.
    pub fn rate(self, secs: f64) -> String {
        match self {
            Work::Flops(n) => format!("{:.1} GFLOP/s", n as f64 / secs / 1e9),
            Work::Bytes(n) => format!("{:.2} GB/s", n as f64 / secs / 1e9),
        }
    }
}

/// Seconds per iteration of every batch of iterations timed, for [`report`].
#[derive(Default)]
pub struct Samples(Mutex<Vec<f64>>);

impl Samples {
    /// Runs `f` `iters` times and returns the elapsed time, recording the time per iteration.
    /// Meant for criterion's `iter_custom`.
    pub fn time(&self, iters: u64, mut f: impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        let elapsed = start.elapsed();
        if iters > 0 {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(elapsed.as_secs_f64() / iters as f64);
        }
        elapsed
    }

    /// The median time per iteration, warm-up batches included (they are few).
    pub fn median(&self) -> Option<f64> {
        let v = self.sorted();
        v.get(v.len() / 2).copied()
    }

    /// The shortest time per iteration: on a machine shared with other work, the closest to
    /// what the code can do.
    pub fn best(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.sort_by(f64::total_cmp);
        v
    }
}

/// Prints `label: RATE (best RATE, T ms/iter)` from the median and best of `samples`, and
/// returns the median rate.
pub fn report(label: &str, work: Work, samples: &Samples) -> Option<String> {
    let (median, best) = (samples.median()?, samples.best()?);
    let rate = work.rate(median);
    println!("{label}: {rate} (best {}, {:.3} ms/iter)", work.rate(best), median * 1e3);
    Some(rate)
}

/// A tensor of seeded uniform values in `[-1, 1)`.
pub fn random_tensor(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let data = random_f32(shape.iter().product(), seed);
    Tensor::from_f32(data, shape, dtype, Device::Cpu).expect("element count matches the shape")
}

/// `n` seeded uniform values in `[-1, 1)`.
pub fn random_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}
