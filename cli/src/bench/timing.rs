//! Warm-up and timed calls, with the op-family totals of the timed ones.

use std::time::{Duration, Instant};

use anyhow::Result;
use kiln_runtime::profile::{self, FamilyTotals};

use super::subject::Subject;

/// What the timed calls took.
pub struct Timing {
    /// Seconds of each timed call, in order.
    pub seconds: Vec<f64>,
    /// Per family of ops, summed over the timed calls.
    pub families: Vec<FamilyTotals>,
}

impl Timing {
    /// The median call time.
    pub fn median(&self) -> f64 {
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
    }

    /// FLOPs of one call, as the ops counted them.
    pub fn flops_per_call(&self) -> f64 {
        self.families.iter().map(|f| f.flops as f64).sum::<f64>() / self.seconds.len() as f64
    }
}

/// Runs `warmup` untimed calls, then `iters` timed ones with the op profile on.
pub fn time(subject: &Subject, warmup: usize, iters: usize) -> Result<Timing> {
    for i in 0..warmup {
        let t = Instant::now();
        subject.call()?;
        eprintln!("warm-up {}/{warmup}: {:.3} s", i + 1, t.elapsed().as_secs_f64());
    }
    profile::reset();
    profile::enable(true);
    let mut seconds = Vec::with_capacity(iters);
    for i in 0..iters {
        let t = Instant::now();
        let result = subject.call();
        let elapsed = t.elapsed();
        if let Err(e) = result {
            profile::enable(false);
            return Err(e);
        }
        eprintln!("call {}/{iters}: {:.3} s", i + 1, elapsed.as_secs_f64());
        seconds.push(elapsed.as_secs_f64());
    }
    profile::enable(false);
    Ok(Timing { seconds, families: profile::snapshot() })
}

/// A duration in seconds, for sums.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
