//! The 32-bit Mersenne Twister exactly as torch's CPU generator runs it (`at::mt19937`): seeded
//! from the low 32 bits of a 64-bit seed with the reference initialisation, state regenerated
//! lazily when the 624 words are used up.

const STATE_LEN: usize = 624;
const SHIFT: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// MT19937 state: 624 words, the index of the next word to temper, and how many are left.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; STATE_LEN],
    next: usize,
    left: usize,
}

impl Mt19937 {
    /// Seeds like `torch.Generator().manual_seed(seed)`: only `seed mod 2^32` reaches the state.
    pub fn new(seed: u64) -> Mt19937 {
        let mut state = [0u32; STATE_LEN];
        state[0] = seed as u32;
        for j in 1..STATE_LEN {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(j as u32);
        }
        // torch starts with one word "left" so the first draw regenerates the whole state.
        Mt19937 { state, next: 0, left: 1 }
    }

    /// The next tempered 32-bit output (torch's `CPUGeneratorImpl::random`).
    pub fn next_u32(&mut self) -> u32 {
        self.left -= 1;
        if self.left == 0 {
            self.regenerate();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// Two outputs as one 64-bit value, the first in the high half (torch's `random64`).
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }

    fn regenerate(&mut self) {
        let s = &mut self.state;
        for k in 0..STATE_LEN {
            let mixed = (s[k] & UPPER_MASK) | (s[(k + 1) % STATE_LEN] & LOWER_MASK);
            let twisted = (mixed >> 1) ^ if s[(k + 1) % STATE_LEN] & 1 != 0 { MATRIX_A } else { 0 };
            s[k] = s[(k + SHIFT) % STATE_LEN] ^ twisted;
        }
        self.left = STATE_LEN;
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference MT19937 (Matsumoto & Nishimura, also C++'s std::mt19937) gives 4123659995 as
    /// its 10000th output for the default seed 5489: the standard's own check value.
    #[test]
    fn matches_the_reference_generator() {
        let mut mt = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = mt.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }
}
