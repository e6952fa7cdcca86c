//! Logs in event mode for in-process tests: options with the test's
//! clock and the key map on or off, and the trust a client puts in them.

use std::path::Path;

use quire_core::LogSigner;
use quire_server::log::{Clock, DedupPolicy, LogOptions};

/// Options of the event log `origin` signed by `signer`, its high-water
/// record in `dir`, no dedup (every event is new), the key map on when
/// `key_map`, and `clock` in place of the system's when given.
pub fn options(
    dir: &Path,
    origin: &str,
    signer: &LogSigner,
    key_map: bool,
    clock: Option<Clock>,
) -> LogOptions {
    let mut opts = LogOptions::new(
        origin,
        vec![signer.clone()],
        quire_server::highwater::HighWater::at(dir.join("hw")),
    );
    opts.events = true;
    opts.key_map = key_map;
    opts.dedup = DedupPolicy::Off;
    if let Some(c) = clock {
        opts.clock = c;
    }
    opts
}
