//! Progress for logs: when standard error is not a terminal (CI, Slurm, `2> run.log`) the bar
//! draws nothing, so a thread prints one plain line every interval instead:
//! `images 120/5000, 1.8 img/s, eta 45m`.
//!
//! A thread rather than a check on each update, so that lines keep their rhythm through a long
//! model call (one full-size UNet step on a CPU can take longer than the interval).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Prints a progress line every interval until dropped or [`ProgressLines::stop`]ped.
#[derive(Debug)]
pub struct ProgressLines {
    /// Dropping (or sending on) it wakes the thread to end.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressLines {
    /// Starts the thread: every `interval` it reads `position` (in `units_per_image` units, as
    /// the bar counts) against `total_images` and prints a line on standard error.
    pub fn start(
        position: Arc<AtomicU64>,
        units_per_image: u64,
        total_images: u64,
        interval: Duration,
    ) -> ProgressLines {
        let (stop, wake) = mpsc::channel::<()>();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = wake.recv_timeout(interval) {
                let done = position.load(Ordering::Relaxed) as f64 / units_per_image as f64;
                eprintln!("{}", line(done, total_images, started.elapsed()));
            }
        });
        ProgressLines { stop: Some(stop), thread: Some(thread) }
    }

    /// Stops the thread and waits for it (no line is printed after this returns).
    pub fn stop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ProgressLines {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `images DONE/TOTAL, RATE img/s, eta LEFT`: `done` may be fractional (images part-way
/// through their steps count for their share, so the rate moves during a long first group); the
/// rate is over the time since the bar started, and the time left assumes it holds.
pub fn line(done: f64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done / secs } else { 0.0 };
    let left = (total as f64 - done).max(0.0);
    let eta = if left == 0.0 {
        "0s".to_owned()
    } else if rate > 0.0 {
        duration_words(left / rate)
    } else {
        "unknown".to_owned()
    };
    format!("images {}/{total}, {} img/s, eta {eta}", done.floor() as u64, rate_words(rate))
}

/// Two significant digits down to 0.01 img/s (a real model on a CPU is well under 1).
fn rate_words(rate: f64) -> String {
    if rate >= 10.0 {
        format!("{rate:.0}")
    } else if rate >= 1.0 {
        format!("{rate:.1}")
    } else if rate >= 0.1 {
        format!("{rate:.2}")
    } else {
        format!("{rate:.3}")
    }
}

/// `45s`, `12m`, `3h05m`, `2d04h`: coarse enough to read at a glance in a log.
fn duration_words(secs: f64) -> String {
    let secs = secs.round() as u64;
    match secs {
        0..90 => format!("{secs}s"),
        90..5400 => format!("{}m", (secs + 30) / 60),
        5400..172_800 => {
            let minutes = (secs + 30) / 60;
            format!("{}h{:02}m", minutes / 60, minutes % 60)
        }
        _ => {
            let hours = (secs + 1800) / 3600;
            format!("{}d{:02}h", hours / 24, hours % 24)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_give_count_rate_and_time_left() {
        // 120 of 5000 images in 66.7 s: 1.8 img/s, 4880 left take 2711 s.
        let line = line(120.0, 5000, Duration::from_secs_f64(120.0 / 1.8));
        assert_eq!(line, "images 120/5000, 1.8 img/s, eta 45m");
        assert_eq!(super::line(2.5, 4, Duration::from_secs(10)), "images 2/4, 0.25 img/s, eta 6s");
        assert_eq!(super::line(0.0, 4, Duration::from_secs(3)), "images 0/4, 0.000 img/s, eta unknown");
        assert_eq!(super::line(4.0, 4, Duration::ZERO), "images 4/4, 0.000 img/s, eta 0s");
        assert_eq!(super::line(300.0, 400, Duration::from_secs(10)), "images 300/400, 30 img/s, eta 3s");
    }

    #[test]
    fn durations_read_at_a_glance() {
        let words: Vec<String> = [0.4, 89.0, 90.0, 2700.0, 5399.0, 5400.0, 11_100.0, 172_800.0, 190_000.0]
            .iter()
            .map(|&s| duration_words(s))
            .collect();
        assert_eq!(words, ["0s", "89s", "2m", "45m", "90m", "1h30m", "3h05m", "2d00h", "2d05h"]);
    }

    #[test]
    fn the_thread_prints_until_stopped() {
        let position = Arc::new(AtomicU64::new(0));
        let mut lines = ProgressLines::start(position.clone(), 1000, 3, Duration::from_millis(5));
        position.store(1500, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        lines.stop();
        assert!(lines.thread.is_none());
        lines.stop(); // twice is fine
    }
}
