//! A log in memory for the tests of the log API.

use quire_core::{LogKeyAlgorithm, LogSigner};
use quire_server::log::{Log, LogOptions};
use quire_server::store::memory::MemoryStore;

/// Log `origin` in memory, its high-water record in `dir`.
pub fn open(dir: &std::path::Path, origin: &str) -> Log<MemoryStore> {
    Log::open(
        MemoryStore::new(),
        LogOptions::new(
            origin,
            vec![LogSigner::generate(LogKeyAlgorithm::Ed25519, origin).unwrap()],
            quire_server::highwater::HighWater::at(
                dir.join(format!("{}.hw", origin.replace('/', "_"))),
            ),
        ),
    )
    .unwrap()
}
