//! Shared helpers for kiln's criterion benches.
