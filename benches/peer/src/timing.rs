//! Timing one engine's forward calls the same way for both engines: `warmup` untimed calls, then
//! `iters` timed ones; only the call is inside the clock (not loading, not input conversion, not
//! reading the output back).

use std::time::Instant;

/// How many calls to make.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub warmup: usize,
    pub iters: usize,
    /// Load and build the models only: no call at all.
    pub dry: bool,
}

/// One engine's result for one case and precision.
pub struct Run {
    /// Seconds of each timed call.
    pub times: Vec<f64>,
    /// The last call's output as f32, NHWC (`None` when dry).
    pub output: Option<Vec<f32>>,
    /// Seconds spent loading the weights (not part of the comparison, printed for context).
    pub load_secs: f64,
    /// Something a reader should know about this run (a dtype the engine substituted).
    pub note: Option<String>,
}

/// Median, min and max of a non-empty sample.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for an empty sample.
    pub fn of(times: &[f64]) -> Option<Summary> {
        if times.is_empty() {
            return None;
        }
        let mut t = times.to_vec();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        let median = if n % 2 == 1 { t[n / 2] } else { (t[n / 2 - 1] + t[n / 2]) / 2.0 };
        Some(Summary { median, min: t[0], max: t[n - 1] })
    }
}

/// Makes the calls of `plan`: `call` runs one forward and returns the output handle, `read`
/// turns the last one into host f32 NHWC. `label` prefixes the progress lines (on stderr).
pub fn time_calls<T>(
    plan: &Plan,
    label: &str,
    mut call: impl FnMut() -> anyhow::Result<T>,
    read: impl FnOnce(T) -> anyhow::Result<Vec<f32>>,
) -> anyhow::Result<(Vec<f64>, Option<Vec<f32>>)> {
    if plan.dry {
        return Ok((Vec::new(), None));
    }
    let mut last = None;
    for i in 0..plan.warmup {
        let t = Instant::now();
        last = Some(call()?);
        eprintln!("{label}: warm-up {}/{}: {:.2} s", i + 1, plan.warmup, t.elapsed().as_secs_f64());
    }
    let mut times = Vec::with_capacity(plan.iters);
    for i in 0..plan.iters {
        let t = Instant::now();
        let out = call()?;
        let secs = t.elapsed().as_secs_f64();
        eprintln!("{label}: call {}/{}: {secs:.2} s", i + 1, plan.iters);
        times.push(secs);
        last = Some(out);
    }
    let output = last.map(read).transpose()?;
    Ok((times, output))
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn median_of_odd_and_even_samples() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Summary::of(&[]).is_none());
    }
}
