//! Time and FLOPs per family of ops, for `kiln bench`: off by default (one relaxed atomic load
//! per op), switched on with [`enable`], read with [`snapshot`]. FLOPs are counted from the
//! shapes each op runs at (2 per multiply-add: linear and conv `2·M·N·K`, attention
//! `4·B·H·Lq·Lk·D`), so a model's count follows from its config as it runs.
//!
//! Each op of [`crate::ops`] opens a span on the caller's thread; only the outermost span of a
//! thread counts, so an op built from others is counted once, under its own family. On a CUDA
//! device an op returns once its kernels are queued, so the spans measure launch time there,
//! not GPU time.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A family of ops whose time is reported together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpFamily {
    /// Linear layers and matrix products.
    Matmul,
    /// Convolutions.
    Conv,
    /// Attention (scores, softmax and values in one op).
    Attention,
    /// Group norm (with or without SiLU) and layer norm.
    Norm,
    /// GELU, GEGLU, SiLU.
    Activation,
    /// Add, multiply, affine maps, softmax on its own, timestep embeddings.
    Elementwise,
    /// Upsampling, concatenation, permutation, narrowing.
    Layout,
    /// Dtype conversions.
    Convert,
}

impl OpFamily {
    /// Every family, in report order.
    pub const ALL: [OpFamily; 8] = [
        OpFamily::Matmul,
        OpFamily::Conv,
        OpFamily::Attention,
        OpFamily::Norm,
        OpFamily::Activation,
        OpFamily::Elementwise,
        OpFamily::Layout,
        OpFamily::Convert,
    ];

    /// The family's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            OpFamily::Matmul => "matmul",
            OpFamily::Conv => "conv",
            OpFamily::Attention => "attention",
            OpFamily::Norm => "norm",
            OpFamily::Activation => "activation",
            OpFamily::Elementwise => "elementwise",
            OpFamily::Layout => "layout",
            OpFamily::Convert => "convert",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static CALLS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static FLOPS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Switches the per-family timing on or off for the whole process.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Zeroes the counters.
pub fn reset() {
    NANOS.iter().chain(&CALLS).chain(&FLOPS).for_each(|c| c.store(0, Ordering::Relaxed));
}

/// What one family of ops did since the last [`reset`].
#[derive(Clone, Copy, Debug)]
pub struct FamilyTotals {
    /// The family.
    pub family: OpFamily,
    /// Wall time in its ops (outermost spans only).
    pub time: Duration,
    /// Ops run.
    pub calls: u64,
    /// Floating-point operations counted (0 for families that are not counted).
    pub flops: u64,
}

/// Totals per family since the last [`reset`], in [`OpFamily::ALL`] order.
pub fn snapshot() -> Vec<FamilyTotals> {
    OpFamily::ALL
        .iter()
        .map(|&family| {
            let i = family as usize;
            FamilyTotals {
                family,
                time: Duration::from_nanos(NANOS[i].load(Ordering::Relaxed)),
                calls: CALLS[i].load(Ordering::Relaxed),
                flops: FLOPS[i].load(Ordering::Relaxed),
            }
        })
        .collect()
}

/// Adds `flops` to `family`'s count, if profiling is on and the calling op is not inside
/// another op's span.
pub(crate) fn count_flops(family: OpFamily, flops: u64) {
    if ENABLED.load(Ordering::Relaxed) && DEPTH.with(|d| d.get()) <= 1 {
        FLOPS[family as usize].fetch_add(flops, Ordering::Relaxed);
    }
}

/// An open span: adds its time to its family when dropped, if it is its thread's outermost.
pub(crate) struct Span {
    /// `None` while profiling is off; the start and family (`None` inside another span).
    open: Option<Option<(Instant, OpFamily)>>,
}

/// Opens a span for an op of `family`.
pub(crate) fn span(family: OpFamily) -> Span {
    if !ENABLED.load(Ordering::Relaxed) {
        return Span { open: None };
    }
    let depth = DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get()
    });
    Span { open: Some((depth == 1).then(|| (Instant::now(), family))) }
}

impl Drop for Span {
    fn drop(&mut self) {
        let Some(outer) = self.open else { return };
        DEPTH.with(|d| d.set(d.get() - 1));
        if let Some((start, family)) = outer {
            let i = family as usize;
            NANOS[i].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            CALLS[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_outermost_span_counts() {
        enable(true);
        reset();
        {
            let _outer = span(OpFamily::Norm);
            let _inner = span(OpFamily::Matmul);
            std::thread::sleep(Duration::from_millis(2));
        }
        count_flops(OpFamily::Norm, 0);
        let calls: Vec<u64> = snapshot().iter().map(|s| s.calls).collect();
        enable(false);
        assert_eq!(calls[OpFamily::Norm as usize], 1);
        assert_eq!(calls[OpFamily::Matmul as usize], 0);
        assert!(snapshot()[OpFamily::Norm as usize].time >= Duration::from_millis(2));
    }
}
