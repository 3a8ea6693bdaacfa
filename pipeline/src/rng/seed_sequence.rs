//! numpy's `SeedSequence` (NEP 19; Melissa O'Neill's seed_seq hash): entropy and a spawn key
//! mixed into a pool of 32-bit words, from which `generate_state` draws seeds. torchsde seeds
//! every node of its Brownian tree this way, so kiln needs the same words to draw the same noise.
//!
//! What numpy does, and so this module: integers become little-endian 32-bit words (0 is one
//! word `[0]`); with a spawn key the entropy words are zero-padded to the pool size before the
//! spawn key's words are appended; each word is hashed into the pool, every pool word is mixed
//! with every other, words beyond the pool are mixed into every pool word; `generate_state`
//! hashes the pool words in turn (cycling) with a second hash. All arithmetic wraps at 2^32.

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;

/// numpy's default pool size (`SeedSequence(pool_size=4)`).
pub const DEFAULT_POOL_SIZE: usize = 4;

/// A mixed entropy pool, like `np.random.SeedSequence(entropy, spawn_key=..., pool_size=...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSequence {
    pool: Vec<u32>,
}

/// Little-endian 32-bit words of a non-negative integer, numpy's `_int_to_uint32_array`.
pub fn int_to_words(mut n: u128) -> Vec<u32> {
    if n == 0 {
        return vec![0];
    }
    let mut words = Vec::new();
    while n > 0 {
        words.push(n as u32);
        n >>= 32;
    }
    words
}

impl SeedSequence {
    /// The pool for integer `entropy` and a spawn key of integers (empty for a root sequence).
    pub fn new(entropy: u128, spawn_key: &[u128], pool_size: usize) -> SeedSequence {
        let mut words = int_to_words(entropy);
        let spawn: Vec<u32> = spawn_key.iter().flat_map(|&k| int_to_words(k)).collect();
        if !spawn.is_empty() && words.len() < pool_size {
            words.resize(pool_size, 0);
        }
        words.extend(spawn);
        SeedSequence { pool: mix_entropy(&words, pool_size) }
    }

    /// The mixed pool (numpy's `SeedSequence.pool`).
    pub fn pool(&self) -> &[u32] {
        &self.pool
    }

    /// `n` 32-bit seeds, like `generate_state(n)` (dtype uint32).
    pub fn generate_state(&self, n: usize) -> Vec<u32> {
        let mut hash_const = INIT_B;
        self.pool
            .iter()
            .cycle()
            .take(n)
            .map(|&word| {
                let mut value = word ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                value = value.wrapping_mul(hash_const);
                value ^ (value >> XSHIFT)
            })
            .collect()
    }
}

/// numpy's `mix_entropy`: hashes `entropy` into a pool of `pool_size` words.
fn mix_entropy(entropy: &[u32], pool_size: usize) -> Vec<u32> {
    let mut hash_const = INIT_A;
    let mut hash = |value: u32| {
        let mut value = value ^ hash_const;
        hash_const = hash_const.wrapping_mul(MULT_A);
        value = value.wrapping_mul(hash_const);
        value ^ (value >> XSHIFT)
    };
    let mix = |x: u32, y: u32| {
        let result = MIX_MULT_L.wrapping_mul(x).wrapping_sub(MIX_MULT_R.wrapping_mul(y));
        result ^ (result >> XSHIFT)
    };
    // Entropy up to the pool size; past the entropy the hash keeps running on zeros.
    let mut pool: Vec<u32> = (0..pool_size).map(|i| hash(entropy.get(i).copied().unwrap_or(0))).collect();
    // Every pool word into every other, so late words reach early ones.
    for src in 0..pool_size {
        for dst in 0..pool_size {
            if src != dst {
                let hashed = hash(pool[src]);
                pool[dst] = mix(pool[dst], hashed);
            }
        }
    }
    // Entropy beyond the pool, each word into every pool word.
    for &word in entropy.iter().skip(pool_size) {
        for dst in 0..pool_size {
            let hashed = hash(word);
            pool[dst] = mix(pool[dst], hashed);
        }
    }
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_become_little_endian_words() {
        assert_eq!(int_to_words(0), vec![0]);
        assert_eq!(int_to_words(5), vec![5]);
        assert_eq!(int_to_words((7u128 << 32) | 9), vec![9, 7]);
    }

    /// Different spawn keys give different pools (the padding keeps entropy and key apart).
    #[test]
    fn spawn_keys_separate_streams() {
        let a = SeedSequence::new(1, &[0, 1], 24).generate_state(4);
        let b = SeedSequence::new(1, &[1, 1], 24).generate_state(4);
        assert_ne!(a, b);
    }
}
