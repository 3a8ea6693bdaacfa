//! Helpers shared by the warp, mma, cp.async and atomic tests.
//!
//! The kernels in these tests use only loads, stores, branches and the instructions under
//! test, so that each family is tested on its own (the integer and move families are
//! developed separately). Lane-dependent values therefore come from tables: `ld.global.u8
//! %rd1, [%laneid+IDX8]` gives `8 * lane`, and `[%rd1+TABLE]` then addresses the lane's
//! 8-byte entry of any table. (Real PTX would compute these with `mov`/`mad`; PTX reserves
//! loads into `.pred` registers, which the interpreter accepts and the tests use to set
//! predicates.)

#![allow(dead_code)]

use kiln_softgpu::testing::Harness;
use rand::{Rng, SeedableRng};

pub type Rng64 = rand::rngs::StdRng;

pub fn rng(seed: u64) -> Rng64 {
    Rng64::seed_from_u64(seed)
}

/// A buffer of `8 * lane` bytes for lanes 0..32: the index table.
pub fn idx8(h: &Harness) -> u64 {
    h.buffer(&(0..32u8).map(|l| 8 * l).collect::<Vec<_>>())
}

/// A table of one u64 per lane.
pub fn table(h: &Harness, vals: &[u64]) -> u64 {
    h.buffer(&vals.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
}

/// A table of one u32 per lane, each in the low half of an 8-byte entry.
pub fn table32(h: &Harness, vals: &[u32]) -> u64 {
    table(h, &vals.iter().map(|&v| v as u64).collect::<Vec<_>>())
}

/// A table of one byte per lane (for `[%laneid+T]`).
pub fn bytes(h: &Harness, vals: &[u8]) -> u64 {
    h.buffer(vals)
}

/// 32 random u32 values.
pub fn random_u32(rng: &mut Rng64) -> Vec<u32> {
    (0..32).map(|_| rng.random()).collect()
}

/// An output table of `n` u64 entries, written so that reads are initialised.
pub fn out(h: &Harness, n: usize) -> u64 {
    table(h, &vec![0xdead_beef_dead_beef; n])
}

/// The register declarations every test kernel starts with.
pub const REGS: &str =
    "  .reg .b64 %rd<48>;\n  .reg .b32 %r<48>;\n  .reg .pred %p<16>;\n  .reg .f32 %f<48>;\n";
