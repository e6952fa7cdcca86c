//! Logs in event mode for in-process tests (on redb, with the test's
//! clock and the key map on or off), and searches by key through the CLI.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quire_core::LogSigner;
use quire_server::api::LogApi;
use quire_server::log::{Clock, DedupPolicy, Log, LogOptions};
use quire_server::store::redb::{RedbOptions, RedbStore};

/// A clock the test sets, at `t0` Unix ms to begin with: the handle that
/// moves it, and the clock a log reads.
pub fn test_clock(t0: u64) -> (Arc<AtomicU64>, Clock) {
    let now = Arc::new(AtomicU64::new(t0));
    let read = Arc::clone(&now);
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

/// Opens the event log `origin` signed by `signer` in `dir` (`log.redb`;
/// a closed log's file is free once its last handle is gone: polled, at
/// most 500 times 10 ms) and the log API over it alone.
///
/// # Panics
/// When the file does not open or the log refuses to.
#[allow(clippy::expect_used)]
pub fn open(
    dir: &Path,
    origin: &str,
    signer: &LogSigner,
    key_map: bool,
    clock: Option<Clock>,
) -> (Log<RedbStore>, LogApi<RedbStore>) {
    let store = (0..500)
        .find_map(|_| {
            RedbStore::open(&dir.join("log.redb"), RedbOptions::default())
                .ok()
                .or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                })
        })
        .expect("the store opens");
    let log =
        Log::open(store, options(dir, origin, signer, key_map, clock)).expect("the log opens");
    let api = LogApi::new(vec![log.clone()]);
    (log, api)
}

/// Options of the event log `origin` signed by `signer`, its high-water
/// record in `dir`, no dedup (every event is new), the key map on when
/// `key_map`, and `clock` in place of the system's when given.
fn options(
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
