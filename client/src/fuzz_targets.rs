//! Bodies of the client's fuzz targets (`fuzz/fuzz_targets/`), kept here so
//! that the ordinary test suite replays their corpora: what the `quire` CLI
//! reads from files and stdin before it sends or checks anything. None may
//! panic on any input.

use crate::events::Submission;

/// Reads `data` as a line the CLI takes, by its first byte: a Kubernetes
/// audit event, a `CloudTrail` record or log file, an OCSF API Activity
/// event (`quire event import`), an event in JSON (`quire event add
/// --file`), the words of `quire event add`, or a link of a checkpoint
/// chain (`quire audit`). Every event it yields is valid; a chain link
/// that parses writes back to itself. Returns how many events or links it
/// yielded.
///
/// # Panics
/// When an event it yields is invalid, or a link's round trip fails: bugs
/// the fuzzer is there to find.
pub fn cli_inputs(data: &[u8]) -> usize {
    use crate::import::{events, Format};
    let Some((pick, rest)) = data.split_first() else {
        return 0;
    };
    let valid = |subs: Vec<Submission>| {
        for s in &subs {
            assert!(s.event.validate().is_ok(), "{:?}", s.event);
        }
        subs.len()
    };
    match pick % 6 {
        0 => events(Format::K8s, rest).map_or(0, valid),
        1 => events(Format::CloudTrail, rest).map_or(0, valid),
        2 => events(Format::Ocsf, rest).map_or(0, valid),
        3 => serde_json::from_slice::<serde_json::Value>(rest)
            .ok()
            .and_then(|v| crate::events::from_json(&v).ok())
            .map_or(0, |s| valid(vec![s])),
        4 => {
            let words: Vec<String> = String::from_utf8_lossy(rest)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            crate::events::from_words(&words, |f| Err(format!("no file {f:?} here")))
                .map_or(0, |s| valid(vec![s]))
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return 0;
            };
            let Ok(link) = crate::audit::ChainLink::from_json_line(text, "fuzz") else {
                return 0;
            };
            let again = crate::audit::ChainLink::from_json_line(&link.to_json_line(), "fuzz");
            assert_eq!(again.ok().as_ref(), Some(&link));
            1
        }
    }
}
