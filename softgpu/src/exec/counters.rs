//! Per-launch profile counters: counts, never times.

use crate::program::inst::Class;

/// What a launch did, summed over its CTAs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Warp instructions by class: mma, global, shared, cp.async, ldmatrix, special, control, other.
    pub warp_instructions: [u64; 8],
    /// Thread instructions (active lanes summed).
    pub thread_instructions: u64,
    /// Bytes moved to or from global memory by loads, stores, atomics and cp.async.
    pub global_bytes: u64,
    /// Extra shared-memory wavefronts caused by bank conflicts (32 banks of 4 bytes).
    pub bank_conflicts: u64,
    /// Shared-memory access wavefronts.
    pub shared_wavefronts: u64,
    /// CTAs executed.
    pub ctas: u64,
}

impl Counters {
    /// The index of `class` in [`Counters::warp_instructions`].
    pub fn class_index(class: Class) -> usize {
        match class {
            Class::Mma => 0,
            Class::GlobalMem => 1,
            Class::SharedMem => 2,
            Class::AsyncCopy => 3,
            Class::Ldmatrix => 4,
            Class::Special => 5,
            Class::Control => 6,
            Class::Other => 7,
        }
    }

    /// The class names, in index order.
    pub const CLASS_NAMES: [&'static str; 8] =
        ["mma", "global", "shared", "cp.async", "ldmatrix", "special", "control", "other"];

    /// Adds `other` in.
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.warp_instructions.iter_mut().zip(other.warp_instructions) {
            *a += b;
        }
        self.thread_instructions += other.thread_instructions;
        self.global_bytes += other.global_bytes;
        self.bank_conflicts += other.bank_conflicts;
        self.shared_wavefronts += other.shared_wavefronts;
        self.ctas += other.ctas;
    }

    /// All warp instructions.
    pub fn total_warp_instructions(&self) -> u64 {
        self.warp_instructions.iter().sum()
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} CTAs, {} warp instructions (", self.ctas, self.total_warp_instructions())?;
        for (i, (name, n)) in Self::CLASS_NAMES.iter().zip(self.warp_instructions).enumerate() {
            write!(f, "{}{name} {n}", if i > 0 { ", " } else { "" })?;
        }
        write!(
            f,
            "), {} thread instructions, {} global bytes, {} shared wavefronts, {} bank-conflict wavefronts",
            self.thread_instructions, self.global_bytes, self.shared_wavefronts, self.bank_conflicts
        )
    }
}
