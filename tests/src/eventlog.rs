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

/// `quire --json search FLAG VALUE` against the server at `url`, verified
/// against `key`: its output once the log's key map has a head (polled,
/// at most 300 times 20 ms).
///
/// # Panics
/// When the search fails for another reason, or no head comes.
pub fn search_by_key(url: &str, key: &str, flag: &str, value: &str) -> String {
    for _ in 0..300 {
        let (code, out, err) = crate::run_bin(
            "quire",
            &[
                "--json",
                "search",
                flag,
                value,
                "--addr",
                url,
                "--log-key",
                key,
            ],
        );
        if code == 0 {
            return out;
        }
        // With --json the refusal is on stdout.
        assert!(
            format!("{out}{err}").contains("has not committed to a key map yet"),
            "exit {code}: {out}{err}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no key map head within 6 s");
}
