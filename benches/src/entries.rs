//! What the load generator writes: entry content ([`Payload`]), one entry
//! at a time ([`entry`]), and, for the timed loops of writers, entries
//! copied from random bytes drawn before the clock starts ([`Entries`]).
//!
//! Every entry starts with its number, 8 bytes big-endian, so entries
//! numbered apart are distinct leaves: a log's dedup never answers one
//! from storage.

use std::sync::Arc;

use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

/// Entry content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Payload {
    /// Incompressible random bytes.
    Random,
    /// JSON audit events.
    Json,
}

/// One entry: `n` makes it unique.
pub fn entry(rng: &mut rand::rngs::StdRng, payload: Payload, len: usize, n: u64) -> Vec<u8> {
    match payload {
        Payload::Random => {
            let mut e = vec![0u8; len.max(8)];
            rng.fill(&mut e[..]);
            e[..8].copy_from_slice(&n.to_be_bytes());
            e
        }
        Payload::Json => {
            let users = ["alice", "bob", "carol", "dave"];
            let actions = ["login", "logout", "read", "update", "delete"];
            let mut s = format!(
                "{{\"seq\":{n},\"time\":\"2026-11-21T10:{:02}:{:02}.{:03}Z\",\"user\":\"{}\",\"action\":\"{}\",\"resource\":\"/records/{}\",\"ip\":\"10.{}.{}.{}\",\"result\":\"ok\"",
                rng.gen_range(0..60),
                rng.gen_range(0..60),
                rng.gen_range(0..1000),
                users[rng.gen_range(0..users.len())],
                actions[rng.gen_range(0..actions.len())],
                rng.gen_range(0..100_000),
                rng.gen_range(0..256),
                rng.gen_range(0..256),
                rng.gen_range(0..256)
            );
            while s.len() + 1 < len {
                s.push(' ');
            }
            s.push('}');
            s.into_bytes()
        }
    }
}

/// Random bytes [`Entries`] copies from: 16 MiB, drawn once.
pub const POOL_BYTES: usize = 16 << 20;

/// Entries for a timed loop. Random entries copy their bytes after the
/// number from a pool drawn once, when this is made (before the clock
/// starts), instead of drawing them in the loop: drawing 256-byte entries
/// with `ChaCha` in the writers' loop took about 2% of the samples of the
/// whole two-core machine (`perf record -a`, a batched run with one
/// standby), CPU the server and PostgreSQL under test share with the load
/// generator (`docs/PERFORMANCE.md`).
///
/// Entry `n` holds window `n mod W` of the pool's `W` windows of its
/// length, back to back: entries numbered in a row (a request, a bundle)
/// hold distinct random bytes and do not compress, and a window comes
/// back only after `W` entries (67,650 for 256-byte entries, 16 MiB
/// apart). JSON entries, and random ones longer than the pool, are made
/// as [`entry`] makes them.
#[derive(Clone)]
pub struct Entries {
    payload: Payload,
    len: usize,
    pool: Arc<[u8]>,
}

impl Entries {
    /// Entries of `len` bytes (at least 8) of `payload`, the pool drawn
    /// from `seed`.
    pub fn new(payload: Payload, len: usize, seed: u64) -> Self {
        let pool: Arc<[u8]> = match payload {
            Payload::Random => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut bytes = vec![0u8; POOL_BYTES];
                rng.fill(&mut bytes[..]);
                bytes.into()
            }
            Payload::Json => Arc::from(Vec::new()),
        };
        Entries {
            payload,
            len: len.max(8),
            pool,
        }
    }

    /// Entry `n`; `rng` draws what the pool does not hold.
    pub fn make(&self, rng: &mut rand::rngs::StdRng, n: u64) -> Vec<u8> {
        let window = self.len - 8;
        let windows = self.pool.len().checked_div(window).unwrap_or(1);
        if self.payload != Payload::Random || windows == 0 {
            return entry(rng, self.payload, self.len, n);
        }
        let k = usize::try_from(n % windows as u64).unwrap_or(0);
        let mut e = Vec::with_capacity(self.len);
        e.extend_from_slice(&n.to_be_bytes());
        e.extend_from_slice(
            self.pool
                .get(k * window..(k + 1) * window)
                .unwrap_or_default(),
        );
        e
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]
    use super::*;

    /// Entries numbered in a row are distinct, start with their number,
    /// and a bundle's worth of them (256) does not compress beyond their
    /// numbers' shared high bytes (under 1%): each holds random bytes no
    /// other entry of the run near it holds. A pool of a few windows
    /// would compress to a fraction and fail here.
    #[test]
    fn pooled_entries_are_unique_and_do_not_compress() {
        let entries = Entries::new(Payload::Random, 256, 7);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let start = (1u64 << 50) + 123;
        let run: Vec<Vec<u8>> = (start..start + 256)
            .map(|n| entries.make(&mut rng, n))
            .collect();
        for (n, e) in (start..).zip(&run) {
            assert_eq!(e.len(), 256);
            assert_eq!(e[..8], n.to_be_bytes());
        }
        let mut tails: Vec<&[u8]> = run.iter().map(|e| &e[8..]).collect();
        tails.sort();
        tails.dedup();
        assert_eq!(tails.len(), 256, "every entry holds bytes of its own");
        let joined: Vec<u8> = run.concat();
        let packed = lz4_flex::compress(&joined);
        assert!(
            packed.len() * 100 >= joined.len() * 99,
            "256 entries compress from {} to {} bytes",
            joined.len(),
            packed.len()
        );
        // The window comes back only after the pool's windows.
        let windows = (POOL_BYTES / 248) as u64;
        assert_eq!(
            entries.make(&mut rng, start)[8..],
            entries.make(&mut rng, start + windows)[8..]
        );
        assert_ne!(
            entries.make(&mut rng, start)[8..],
            entries.make(&mut rng, start + 1)[8..]
        );
    }

    /// Entries of 8 bytes are their number alone; JSON ones as `entry`.
    #[test]
    fn short_and_json_entries() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let e = Entries::new(Payload::Random, 3, 7);
        assert_eq!(e.make(&mut rng, 5), 5u64.to_be_bytes());
        let j = Entries::new(Payload::Json, 200, 7);
        let made = j.make(&mut rng, 9);
        assert_eq!(made.len(), 200);
        assert!(made.starts_with(b"{\"seq\":9,"));
    }
}
