//! The progress bar on standard error and the end-of-run summary.
//!
//! The bar counts images, in thousandths internally so that it moves (and the time left is
//! estimated) during a long group, not only when its images come out; indicatif draws nothing when
//! standard error is not a terminal (or `TERM=dumb`), so logs and pipes stay clean; there a
//! plain line every `--progress-interval` takes its place (`progress_lines`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::progress_lines::ProgressLines;

/// Bar units per image.
const UNITS: u64 = 1000;

/// Images done, images per second and time left, on standard error.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    /// Images finished.
    done: u64,
    /// The bar's position, for the log lines' thread.
    position: Arc<AtomicU64>,
    /// Log lines, when the bar is not drawn and an interval is set.
    lines: Option<ProgressLines>,
}

impl Progress {
    /// A bar for `total_images` on standard error; when that is not a terminal, a progress
    /// line every `interval` instead (none when `interval` is zero).
    pub fn new(total_images: u64, interval: Duration) -> Progress {
        let mut progress = Progress::with_target(total_images, ProgressDrawTarget::stderr());
        if progress.is_hidden() && !interval.is_zero() {
            let position = progress.position.clone();
            progress.lines = Some(ProgressLines::start(position, UNITS, total_images, interval));
        }
        progress
    }

    /// A bar that never draws.
    pub fn hidden(total_images: u64) -> Progress {
        Progress::with_target(total_images, ProgressDrawTarget::hidden())
    }

    fn with_target(total_images: u64, target: ProgressDrawTarget) -> Progress {
        let template = "{elapsed_precise} {wide_bar} {images}/{total} images, {rate}, {eta} left";
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("images", |state: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = write!(w, "{}", state.pos() / UNITS);
            })
            .with_key("total", |state: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = write!(w, "{}", state.len().unwrap_or(0) / UNITS);
            })
            .with_key("rate", |state: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = write!(w, "{:.2} images/s", state.per_sec() / UNITS as f64);
            });
        let bar = ProgressBar::with_draw_target(Some(total_images * UNITS), target).with_style(style);
        Progress { bar, done: 0, position: Arc::new(AtomicU64::new(0)), lines: None }
    }

    /// Whether the bar is drawn at all.
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Shows a group of `group_images` as `done / total` of the way through its model calls.
    pub fn within_group(&self, group_images: usize, done: usize, total: usize) {
        let units = group_images as u64 * UNITS * done.min(total) as u64;
        self.set_position(self.done * UNITS + units.checked_div(total as u64).unwrap_or(0));
    }

    /// Counts `images` as finished (a group rendered, or requests that failed before rendering).
    pub fn finish_images(&mut self, images: usize) {
        self.done += images as u64;
        self.set_position(self.done * UNITS);
    }

    fn set_position(&self, units: u64) {
        self.bar.set_position(units);
        self.position.store(units, Ordering::Relaxed);
    }

    /// Prints a line on standard error above the bar.
    pub fn message(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Removes the bar (or stops the lines).
    pub fn finish(&mut self) {
        if let Some(lines) = &mut self.lines {
            lines.stop();
        }
        self.bar.finish_and_clear();
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Requests that produced images in this run.
    pub done: usize,
    /// Requests that produced an error record in this run.
    pub failed: usize,
    /// Requests skipped because the journal already had their id.
    pub skipped: usize,
    /// Of the skipped requests, those whose journal record is an error record.
    pub skipped_failed: usize,
    /// Images rendered in this run.
    pub images: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// With `--ordered`, what rewriting the journal in input order did.
    pub ordered: Option<super::Sorted>,
    /// When the run was stopped (a signal) before every line had its record: how many lines
    /// have none (a rerun renders them).
    pub stopped: Option<usize>,
    /// Checkpoints named by requests that could not be opened or loaded, in the order met: their
    /// lines have no record, so a rerun renders them once the file is fixed.
    pub unusable: Vec<UnusableCheckpoint>,
    /// Each checkpoint loaded (`--model` first), with its load time.
    pub loads: Vec<ModelLoad>,
    /// SDXL requests that left `use_refiner` out (OctoAI's default: true) and rendered with the
    /// base model alone, no refiner being configured.
    pub without_refiner: usize,
    /// Lines left to the other shards (`--shard`).
    pub other_shards: usize,
}

/// One checkpoint load of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelLoad {
    /// The checkpoint.
    pub path: std::path::PathBuf,
    /// Seconds it took to load.
    pub seconds: f64,
}

/// A checkpoint that failed to open or load, and the lines left without a record because of it.
#[derive(Clone, Debug, PartialEq)]
pub struct UnusableCheckpoint {
    /// The file or folder.
    pub path: std::path::PathBuf,
    /// Why it cannot be used.
    pub reason: String,
    /// The lines that asked for it.
    pub lines: usize,
}

impl UnusableCheckpoint {
    /// Counts one more line for the checkpoint at `path` in `list`, adding it (with `reason`)
    /// the first time; returns whether it was new.
    pub(crate) fn tally(list: &mut Vec<UnusableCheckpoint>, path: &std::path::Path, reason: &str) -> bool {
        match list.iter_mut().find(|u| u.path == path) {
            Some(unusable) => {
                unusable.lines += 1;
                false
            }
            None => {
                list.push(UnusableCheckpoint {
                    path: path.to_path_buf(),
                    reason: reason.to_owned(),
                    lines: 1,
                });
                true
            }
        }
    }
}

impl Summary {
    /// Lines left without a record because their checkpoint could not be used.
    pub fn unrendered(&self) -> usize {
        self.unusable.iter().map(|u| u.lines).sum()
    }

    /// Images per second over the whole run (0 when nothing was rendered).
    pub fn images_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if self.images == 0 || secs <= 0.0 { 0.0 } else { self.images as f64 / secs }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} done, {} failed, {} in {:.1} s ({:.2} images/s)",
            plural(self.done, "request"),
            self.failed,
            plural(self.images, "image"),
            self.elapsed.as_secs_f64(),
            self.images_per_second()
        )?;
        if self.skipped > 0 {
            write!(
                f,
                "; {} already in the journal, skipped ({} of them failed)",
                self.skipped, self.skipped_failed
            )?;
        }
        if self.other_shards > 0 {
            write!(f, "; {} left to the other shards", plural(self.other_shards, "line"))?;
        }
        if let Some(left) = self.stopped {
            write!(f, "; stopped early: {} left for a rerun", plural(left, "request"))?;
        }
        if self.without_refiner > 0 {
            write!(
                f,
                "; {} rendered without the SDXL refiner their use_refiner default asks for: none is \
                 configured (--refiner PATH, or checkpoints/sdxl-refiner in --assets)",
                plural(self.without_refiner, "SDXL request")
            )?;
        }
        for unusable in &self.unusable {
            write!(
                f,
                "; {} not rendered, left for a rerun: cannot use the checkpoint {}: {}",
                plural(unusable.lines, "request"),
                unusable.path.display(),
                unusable.reason
            )?;
        }
        for (i, load) in self.loads.iter().enumerate() {
            let name = load
                .path
                .file_name()
                .map_or_else(|| load.path.display().to_string(), |n| n.to_string_lossy().into_owned());
            write!(f, "{}{name} {:.1} s", if i == 0 { "; loaded " } else { ", " }, load.seconds)?;
        }
        Ok(())
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_counts_and_rate() {
        let summary = Summary {
            done: 3,
            failed: 1,
            images: 6,
            elapsed: Duration::from_millis(1500),
            ..Summary::default()
        };
        assert_eq!(summary.images_per_second(), 4.0);
        assert_eq!(summary.to_string(), "3 requests done, 1 failed, 6 images in 1.5 s (4.00 images/s)");
        let one = Summary { done: 1, images: 1, elapsed: Duration::from_secs(2), ..Summary::default() };
        assert_eq!(one.to_string(), "1 request done, 0 failed, 1 image in 2.0 s (0.50 images/s)");
        let resumed = Summary { skipped: 2, skipped_failed: 1, ..Summary::default() };
        assert_eq!(resumed.images_per_second(), 0.0);
        assert!(
            resumed.to_string().ends_with("2 already in the journal, skipped (1 of them failed)"),
            "{resumed}"
        );
        let stopped = Summary { done: 2, images: 2, stopped: Some(3), ..Summary::default() };
        assert!(stopped.to_string().ends_with("; stopped early: 3 requests left for a rerun"), "{stopped}");
        let unusable = UnusableCheckpoint { path: "/a/broken".into(), reason: "bad header".into(), lines: 4 };
        let loaded = Summary {
            loads: vec![
                ModelLoad { path: "/m/sd15".into(), seconds: 3.25 },
                ModelLoad { path: "/a/checkpoints/juggernaut.safetensors".into(), seconds: 41.0 },
            ],
            ..Summary::default()
        };
        assert!(
            loaded.to_string().ends_with("; loaded sd15 3.2 s, juggernaut.safetensors 41.0 s"),
            "{loaded}"
        );
        let unusable = Summary { unusable: vec![unusable], ..Summary::default() };
        assert_eq!(unusable.unrendered(), 4);
        assert!(
            unusable.to_string().ends_with(
                "; 4 requests not rendered, left for a rerun: cannot use the checkpoint /a/broken: bad header"
            ),
            "{unusable}"
        );
    }

    #[test]
    fn the_bar_counts_images_and_fractions_of_a_group() {
        let mut progress = Progress::hidden(10);
        assert!(progress.is_hidden());
        assert_eq!(progress.bar.length(), Some(10 * UNITS));
        progress.within_group(4, 1, 2);
        assert_eq!(progress.bar.position(), 2 * UNITS);
        progress.finish_images(4);
        progress.within_group(1, 1, 3);
        assert_eq!(progress.bar.position(), 4 * UNITS + UNITS / 3, "a one-image group moves too");
        progress.within_group(6, 3, 3);
        assert_eq!(progress.bar.position(), 10 * UNITS);
        progress.within_group(6, 0, 0);
        assert_eq!(progress.bar.position(), 4 * UNITS);
        progress.finish();
    }
}
