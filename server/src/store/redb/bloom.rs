//! In-memory Bloom filters over the leaf index's runs, so that a strict
//! dedup lookup of a new leaf (the common case: a miss) reads no run block.
//!
//! They are a cache, never stored: a run without a filter is simply probed.
//! A filter may claim keys its run lacks (false positives cost one probe)
//! but never misses a key its run holds. Blocked layout: each key sets
//! [`HASHES`] bits inside one 64-byte block, so a query touches one cache
//! line.

/// Bits per key: with 5 hashes about 2–3 % false positives.
const BITS_PER_KEY: u64 = 8;
const HASHES: u32 = 5;
const BLOCK_BITS: u64 = 512;
const WORDS: usize = 8;

/// A blocked Bloom filter sized for a known number of keys.
pub(crate) struct Bloom {
    blocks: Vec<[u64; WORDS]>,
}

impl Bloom {
    /// A filter for about `keys` keys.
    pub(crate) fn with_capacity(keys: u64) -> Self {
        let blocks = (keys.saturating_mul(BITS_PER_KEY) / BLOCK_BITS).max(1);
        Bloom {
            blocks: vec![[0u64; WORDS]; usize::try_from(blocks).unwrap_or(usize::MAX)],
        }
    }

    fn block(&self, key: u64) -> usize {
        // Keys are uniform (leaf-hash prefixes): the high bits pick a block.
        let n = self.blocks.len() as u128;
        usize::try_from((u128::from(key) * n) >> 64).unwrap_or(0)
    }

    fn bits(key: u64) -> impl Iterator<Item = (usize, u64)> {
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..HASHES).map(move |i| {
            let bit = (h >> (i * 9)) & (BLOCK_BITS - 1);
            (usize::try_from(bit / 64).unwrap_or(0), 1u64 << (bit % 64))
        })
    }

    pub(crate) fn insert(&mut self, key: u64) {
        let b = self.block(key);
        if let Some(block) = self.blocks.get_mut(b) {
            for (w, mask) in Self::bits(key) {
                block[w] |= mask;
            }
        }
    }

    /// False only if `key` was never inserted.
    pub(crate) fn may_contain(&self, key: u64) -> bool {
        self.blocks
            .get(self.block(key))
            .is_none_or(|block| Self::bits(key).all(|(w, mask)| block[w] & mask != 0))
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.blocks.len() * WORDS * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let keys: Vec<u64> = (0..100_000).map(|_| rng.gen()).collect();
        let mut b = Bloom::with_capacity(keys.len() as u64);
        for k in &keys {
            b.insert(*k);
        }
        assert!(keys.iter().all(|k| b.may_contain(*k)));
        let fp = (0..100_000).filter(|_| b.may_contain(rng.gen())).count();
        assert!(fp < 5_000, "{fp} false positives in 100000");
        // 8 bits a key, in whole 64-byte blocks.
        assert_eq!(b.bytes(), 100_000 * 8 / 512 * 64);
    }

    #[test]
    fn tiny_filters_work() {
        let mut b = Bloom::with_capacity(0);
        assert!(!b.may_contain(42));
        b.insert(42);
        assert!(b.may_contain(42));
    }
}
