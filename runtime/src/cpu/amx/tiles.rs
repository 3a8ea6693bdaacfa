//! The AMX instructions kiln uses, one `asm!` block each, and the tile state they need.
//!
//! The layout is fixed: `tmm0..tmm3` hold a 32x32 f32 accumulator block as 2x2 tiles of
//! 16x16, `tmm4`/`tmm5` the two 16-row halves of a 32x32 bf16 slice of A, `tmm6`/`tmm7` the two
//! 16-column halves of a 32x32 bf16 slice of B in pair-interleaved ("VNNI") order. Tile
//! registers keep their contents between `asm!` blocks: the compiler never uses them.

use std::arch::asm;

/// `ldtilecfg`'s 64-byte operand: palette 1, every tile 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = {
    let mut bytes_per_row = [0u16; 16];
    let mut rows = [0u8; 16];
    let mut t = 0;
    while t < 8 {
        bytes_per_row[t] = 64;
        rows[t] = 16;
        t += 1;
    }
    TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row, rows }
};

/// Whether the CPU has AMX-TILE and AMX-BF16 and Linux lets this process use the tile data
/// (`ARCH_REQ_XCOMP_PERM` for `XFEATURE_XTILEDATA`, process-wide).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(super) fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // Leaf 7 reads as zeros (no AMX) on CPUs too old to have it.
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let (amx_bf16, amx_tile) = (leaf7.edx >> 22 & 1 == 1, leaf7.edx >> 24 & 1 == 1);
    // SAFETY: a plain system call with integer arguments; it only changes this process's
    // permitted extended state.
    amx_bf16
        && amx_tile
        && unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(super) fn request_tile_state() -> bool {
    false
}

/// The tile configuration loaded on the current thread for as long as it lives: create one
/// per task (rayon may move the next task to another thread), never two at once on a thread.
pub(super) struct Tiles(());

impl Tiles {
    /// Loads the configuration.
    ///
    /// # Safety
    /// [`super::enabled`] must have returned true.
    pub unsafe fn load() -> Tiles {
        // SAFETY: the caller guarantees AMX is present and permitted; CONFIG is a valid
        // palette-1 configuration.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
        Tiles(())
    }

    /// Zeroes the 32x32 accumulator block.
    pub fn zero(&mut self) {
        // SAFETY: tiles configured by `load`.
        unsafe {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem))
        };
    }

    /// Accumulates one K step of 32: the block += A[32 rows, 32] · B[32, 32 columns].
    ///
    /// # Safety
    /// `a0` and `a1` point at 16 readable rows of 64 bytes each, `a_stride` bytes apart (rows
    /// 0..16 and 16..32 of the slice of A); `b` at 2048 readable bytes: two 16x16 pair tiles
    /// (columns 0..16, then 16..32), as [`super::PackedB`] lays them out.
    #[inline(always)]
    pub unsafe fn step(&mut self, a0: *const u8, a1: *const u8, a_stride: usize, b: *const u8) {
        // SAFETY: the caller guarantees the reads are in bounds; tiles configured by `load`.
        unsafe {
            asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b} + {sb}*1]",
                "tileloadd tmm7, [{b} + {sb}*1 + 1024]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a0,
                a1 = in(reg) a1,
                sa = in(reg) a_stride,
                b = in(reg) b,
                sb = in(reg) 64usize,
                options(nostack, readonly),
            )
        };
    }

    /// Runs `rounds` rounds (at least 1) of four tile products on zeroed operands, nothing
    /// loaded or stored: the ceiling of the tile unit, for [`super::measure_tile_peak`].
    pub fn spin(&mut self, rounds: u64) {
        // SAFETY: tiles configured by `load`; registers only.
        unsafe {
            asm!(
                "tilezero tmm4",
                "tilezero tmm5",
                "tilezero tmm6",
                "tilezero tmm7",
                "2:",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) rounds.max(1) => _,
                options(nostack, nomem),
            )
        };
    }

    /// Stores the accumulator block into `c` (`[32, 32]` row-major).
    pub fn store(&mut self, c: &mut [f32; 32 * 32]) {
        let p = c.as_mut_ptr();
        // SAFETY: `c` holds 32 rows of 128 bytes: tile (i, j) goes to rows 16i.., columns 16j...
        unsafe {
            asm!(
                "tilestored [{p} + {s}*1], tmm0",
                "tilestored [{p} + {s}*1 + 64], tmm1",
                "tilestored [{q} + {s}*1], tmm2",
                "tilestored [{q} + {s}*1 + 64], tmm3",
                p = in(reg) p,
                q = in(reg) p.add(16 * 32),
                s = in(reg) 128usize,
                options(nostack),
            )
        };
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: releases the configuration `load` made on this thread.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}
