//! # quire-benches
//!
//! Criterion micro-benchmarks (`cargo bench -p quire-benches`) that put
//! `quire-core` beside peer crates in the same run. The `quire-bench` load
//! generator arrives with the log server.
