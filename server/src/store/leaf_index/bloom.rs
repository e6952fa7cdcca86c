//! In-memory Bloom filters over the leaf index's runs, so that a strict
//! dedup lookup of a new leaf (the common case: a miss) reads no run block.
//!
//! They are a cache, never stored: a run without a filter is simply probed.
//! A filter may claim keys its run lacks (false positives cost one probe)
//! but never misses a key its run holds. Blocked layout: each key sets
//! its hashes' bits inside one 64-byte block, so a query touches one cache
//! line.

const BLOCK_BITS: u64 = 512;
const WORDS: usize = 8;

/// How dense a filter is: bits per key and hashes per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Density {
    /// 8 bits and 5 hashes a key: about 2–3 % false positives. For an
    /// engine whose false positive costs a read of a local page.
    Compact,
    /// 16 bits and 8 hashes a key: about 0.1 % false positives. For an
    /// engine whose false positive costs a round trip to a database.
    Dense,
}

impl Density {
    fn bits_per_key(self) -> u64 {
        match self {
            Density::Compact => 8,
            Density::Dense => 16,
        }
    }

    fn hashes(self) -> u32 {
        match self {
            Density::Compact => 5,
            Density::Dense => 8,
        }
    }
}

/// One block, on a cache line of its own.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u64; WORDS]);

/// Keys a batched query touches before it tests them: their blocks
/// (4 KiB) stay in the first-level cache between the two passes.
const TOUCH_AHEAD: usize = 64;

/// A blocked Bloom filter sized for a known number of keys.
pub(crate) struct Bloom {
    blocks: Vec<Block>,
    hashes: u32,
}

impl Bloom {
    /// A [`Density::Compact`] filter for about `keys` keys.
    pub(crate) fn with_capacity(keys: u64) -> Self {
        Self::with_density(keys, Density::Compact)
    }

    /// A filter for about `keys` keys.
    pub(crate) fn with_density(keys: u64, density: Density) -> Self {
        let blocks = (keys.saturating_mul(density.bits_per_key()) / BLOCK_BITS).max(1);
        Bloom {
            blocks: vec![Block([0u64; WORDS]); usize::try_from(blocks).unwrap_or(usize::MAX)],
            hashes: density.hashes(),
        }
    }

    /// A filter of `density` holding the keys of `pairs` (key, index).
    pub(crate) fn of_pairs(pairs: &[(u64, u64)], density: Density) -> Self {
        let mut bloom = Self::with_density(pairs.len() as u64, density);
        for (k, _) in pairs {
            bloom.insert(*k);
        }
        bloom
    }

    fn block(&self, key: u64) -> usize {
        // Keys are uniform (leaf-hash prefixes): the high bits pick a block.
        let n = self.blocks.len() as u128;
        usize::try_from((u128::from(key) * n) >> 64).unwrap_or(0)
    }

    /// Bit positions inside the key's block: 9 bits each, five from one
    /// mixed word, the rest from a second.
    fn bits(key: u64, hashes: u32) -> impl Iterator<Item = (usize, u64)> {
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let g = key.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ (key >> 29);
        (0..hashes).map(move |i| {
            let word = if i < 5 {
                h >> (i * 9)
            } else {
                g >> ((i - 5) * 9)
            };
            let bit = word & (BLOCK_BITS - 1);
            (usize::try_from(bit / 64).unwrap_or(0), 1u64 << (bit % 64))
        })
    }

    pub(crate) fn insert(&mut self, key: u64) {
        let b = self.block(key);
        if let Some(block) = self.blocks.get_mut(b) {
            for (w, mask) in Self::bits(key, self.hashes) {
                block.0[w] |= mask;
            }
        }
    }

    /// False only if `key` was never inserted.
    pub(crate) fn may_contain(&self, key: u64) -> bool {
        self.blocks.get(self.block(key)).is_none_or(|block| {
            Self::bits(key, self.hashes).all(|(w, mask)| block.0[w] & mask != 0)
        })
    }

    /// [`Bloom::may_contain`] of each of `keys`: `hit(n)` for each key
    /// `keys[n]` that may be in the filter, in order. A batch of keys
    /// first loads each block it will test, as loads that do not wait for
    /// one another, so that their cache misses overlap instead of each
    /// stalling behind the early exit of the test before it.
    pub(crate) fn may_contain_each(&self, keys: &[u64], mut hit: impl FnMut(usize)) {
        for (c, chunk) in keys.chunks(TOUCH_AHEAD).enumerate() {
            let touched = chunk
                .iter()
                .filter_map(|k| self.blocks.get(self.block(*k)))
                .fold(0u64, |acc, b| acc ^ b.0[0]);
            std::hint::black_box(touched);
            for (n, k) in chunk.iter().enumerate() {
                if self.may_contain(*k) {
                    hit(c * TOUCH_AHEAD + n);
                }
            }
        }
    }

    /// The keys of `keys` a run must be probed for, given its filter:
    /// `hit(n)` for each key `keys[n]` that `filter` may hold, or for
    /// every key when the run has no filter yet (being built), in order.
    pub(crate) fn to_probe(filter: Option<&Bloom>, keys: &[u64], mut hit: impl FnMut(usize)) {
        match filter {
            Some(bloom) => bloom.may_contain_each(keys, hit),
            None => (0..keys.len()).for_each(&mut hit),
        }
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
    fn no_false_negatives_and_few_false_positives_at_either_density() {
        // (density, most false positives in 100,000, bits a key)
        for (density, most_fp, bits) in [(Density::Compact, 5_000, 8), (Density::Dense, 300, 16)] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(3);
            let keys: Vec<u64> = (0..100_000).map(|_| rng.gen()).collect();
            let mut b = Bloom::with_density(keys.len() as u64, density);
            for k in &keys {
                b.insert(*k);
            }
            assert!(keys.iter().all(|k| b.may_contain(*k)), "{density:?}");
            let fp = (0..100_000).filter(|_| b.may_contain(rng.gen())).count();
            assert!(fp < most_fp, "{density:?}: {fp} false positives in 100000");
            // The bits a key, in whole 64-byte blocks.
            assert_eq!(b.bytes(), 100_000 * bits / 512 * 64, "{density:?}");
        }
        // `with_capacity` is the compact density.
        assert_eq!(
            Bloom::with_capacity(100_000).hashes,
            Density::Compact.hashes()
        );
    }

    #[test]
    fn a_batched_query_is_each_query() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut b = Bloom::with_density(64, Density::Dense);
        for _ in 0..300 {
            b.insert(rng.gen());
        }
        let keys: Vec<u64> = (0..1000).map(|_| rng.gen()).collect();
        let want: Vec<usize> = (0..keys.len())
            .filter(|n| b.may_contain(keys[*n]))
            .collect();
        // Some hits and some misses, across several touch batches.
        assert!(want.len() > 10 && want.len() < 990, "{}", want.len());
        for len in [
            0,
            1,
            TOUCH_AHEAD - 1,
            TOUCH_AHEAD,
            TOUCH_AHEAD + 1,
            keys.len(),
        ] {
            let mut got = Vec::new();
            b.may_contain_each(&keys[..len], |n| got.push(n));
            let want: Vec<usize> = want.iter().copied().filter(|n| *n < len).collect();
            assert_eq!(got, want, "{len}");
        }
    }

    #[test]
    fn a_run_without_a_filter_is_probed_for_every_key() {
        let mut b = Bloom::with_capacity(100);
        b.insert(7);
        let keys = [1, 7, 9];
        let mut all = Vec::new();
        Bloom::to_probe(None, &keys, |n| all.push(n));
        assert_eq!(all, [0, 1, 2]);
        let mut some = Vec::new();
        Bloom::to_probe(Some(&b), &keys, |n| some.push(n));
        let want: Vec<usize> = (0..keys.len())
            .filter(|n| b.may_contain(keys[*n]))
            .collect();
        assert_eq!(some, want);
        assert!(some.contains(&1));
    }

    #[test]
    fn tiny_filters_work() {
        let mut b = Bloom::with_capacity(0);
        assert!(!b.may_contain(42));
        b.insert(42);
        assert!(b.may_contain(42));
    }
}
