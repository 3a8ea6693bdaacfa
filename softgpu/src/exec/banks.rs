//! Shared-memory bank conflicts, for the profile counters (never for semantics).
//!
//! The model, after the CUDA C++ Programming Guide's shared-memory sections (compute
//! capability 5.x and later): shared memory has 32 banks, successive 32-bit words in
//! successive banks, each bank delivering one word per cycle. A warp's request is served in
//! *wavefronts*; lanes reading the same 32-bit word share it (broadcast, or multicast for
//! several words), while distinct words of one bank need a wavefront each. One wavefront
//! moves at most 128 bytes, so 8-byte accesses are processed in two phases of 16 lanes
//! (half-warps) and 16-byte accesses in four phases of 8 lanes (quarter-warps); conflicts only
//! arise between lanes of one phase. Accesses of 1, 2 and 4 bytes are one phase of 32 lanes.
//!
//! The ideal count is one wavefront per phase that has an active lane; the excess is the
//! bank-conflict count.

/// Wavefronts needed by the access of `size` bytes per lane at shared byte offsets
/// `addrs[lane]` for the lanes of `mask`, and the ideal (conflict-free) number.
pub fn wavefronts(addrs: &[u64; 32], mask: u32, size: u32) -> (u32, u32) {
    let phase_lanes: u32 = match size {
        0..=4 => 32,
        5..=8 => 16,
        _ => 8,
    };
    let words_per_lane = size.div_ceil(4).max(1) as u64;
    let phase_mask = if phase_lanes == 32 { u32::MAX } else { (1u32 << phase_lanes) - 1 };
    let (mut total, mut ideal) = (0, 0);
    for phase in 0..32 / phase_lanes {
        let m = mask & (phase_mask << (phase * phase_lanes));
        if m == 0 {
            continue;
        }
        // The distinct words the phase touches (at most 32 words), then the most in one bank.
        let mut words = [0u64; 32];
        let mut n = 0;
        for l in super::cx::lanes(m) {
            let first = addrs[l] / 4;
            for w in first..first + words_per_lane {
                if !words[..n].contains(&w) {
                    words[n] = w;
                    n += 1;
                }
            }
        }
        let mut per_bank = [0u8; 32];
        for &w in &words[..n] {
            per_bank[(w % 32) as usize] += 1;
        }
        total += *per_bank.iter().max().expect("32 banks") as u32;
        ideal += 1;
    }
    (total, ideal)
}

/// Adds the wavefronts of one warp-wide shared access to `counters`.
pub fn record(counters: &mut super::Counters, addrs: &[u64; 32], mask: u32, size: u32) {
    if mask != 0 {
        let (w, ideal) = wavefronts(addrs, mask, size);
        counters.shared_wavefronts += w as u64;
        counters.bank_conflicts += (w - ideal) as u64;
    }
}

/// The shared-memory offset of an address in `space`, if it is one.
#[inline]
pub fn shared_offset(space: crate::program::inst::MemSpace, addr: u64) -> Option<u64> {
    use crate::memory::{SHARED_WINDOW, WINDOW_SIZE};
    use crate::program::inst::MemSpace;
    match space {
        MemSpace::Shared => Some(addr),
        MemSpace::Generic if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&addr) => {
            Some(addr - SHARED_WINDOW)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strided(stride: u64, base: u64) -> [u64; 32] {
        std::array::from_fn(|l| base + l as u64 * stride)
    }

    #[test]
    fn four_byte_accesses() {
        assert_eq!(wavefronts(&strided(4, 0), u32::MAX, 4), (1, 1), "stride-1 words");
        assert_eq!(wavefronts(&strided(8, 0), u32::MAX, 4), (2, 1), "stride-2 words");
        assert_eq!(wavefronts(&strided(0, 64), u32::MAX, 4), (1, 1), "one address: broadcast");
        assert_eq!(wavefronts(&strided(128, 0), u32::MAX, 4), (32, 1), "stride-32 words");
        assert_eq!(wavefronts(&strided(12, 4), u32::MAX, 4), (1, 1), "odd stride 3");
        // Bytes of one word are one word.
        assert_eq!(wavefronts(&strided(1, 0), u32::MAX, 1), (1, 1));
        // Only active lanes count: lanes 0 and 1 of a stride-32 pattern conflict 2-way.
        assert_eq!(wavefronts(&strided(128, 0), 0b11, 4), (2, 1));
        assert_eq!(wavefronts(&strided(128, 0), 0, 4), (0, 0));
    }

    #[test]
    fn wide_accesses_go_by_phases() {
        // 16 bytes per lane, consecutive: 4 quarter-warps of 128 bytes each.
        assert_eq!(wavefronts(&strided(16, 0), u32::MAX, 16), (4, 4));
        // Rows 256 bytes apart: the 8 lanes of a phase all hit banks 0-3.
        assert_eq!(wavefronts(&strided(256, 0), u32::MAX, 16), (32, 4));
        // 8 bytes per lane, consecutive: 2 half-warps.
        assert_eq!(wavefronts(&strided(8, 0), u32::MAX, 8), (2, 2));
        // Stride 16 bytes with 8-byte accesses: a half-warp spans 256 bytes, 2-way conflicts.
        assert_eq!(wavefronts(&strided(16, 0), u32::MAX, 8), (4, 2));
        // Only the first quarter-warp active.
        assert_eq!(wavefronts(&strided(16, 0), 0xff, 16), (1, 1));
    }
}
