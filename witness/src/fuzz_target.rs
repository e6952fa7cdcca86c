//! The body of the `witness_request` fuzz target (`fuzz/`), which the test
//! suite also replays over `fuzz/corpus/witness_request`: a C2SP
//! add-checkpoint HTTP body through the parser, the note check and the
//! decision against a stored checkpoint; and of `witness_config`, the
//! witness's configuration file. Nothing may panic.

use quire_core::{LogSigner, VerifierKey};

use crate::check::{decide, verify_note, Latest};
use crate::http::parse_body;

/// Go's `sumdb/note` test key: seeds are signed with it.
pub const SEED_KEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

/// The stored state the fuzzer's requests are decided against: size 3 of
/// the seed log (entries "0", "1", "2").
pub fn stored() -> Option<(LogSigner, Latest)> {
    let signer = LogSigner::from_private_text(SEED_KEY).ok()?;
    let mut range = quire_core::CompactRange::new();
    for e in [b"0", b"1", b"2"] {
        range.append(quire_core::leaf_hash(e), |_, _| {}).ok()?;
    }
    let text = quire_core::Checkpoint::new("PeterNeumann", 3, range.root())
        .ok()?
        .to_text();
    let mut note = quire_core::Note::new(&text).ok()?;
    note.add_signature(signer.sign(text.as_bytes())).ok()?;
    let latest = Latest {
        size: 3,
        root: range.root(),
        note: note.to_bytes(),
    };
    Some((signer, latest))
}

/// Runs one input.
pub fn witness_request(data: &[u8]) {
    let Some((signer, latest)) = stored() else {
        return;
    };
    let keys: Vec<VerifierKey> = vec![signer.verifier()];
    let Ok((old, proof, note)) = parse_body(data) else {
        return;
    };
    let Ok(verified) = verify_note(note, |_| Some(&keys[..])) else {
        return;
    };
    let _ = decide(Some(&latest), old, &proof, &verified, &keys);
    let _ = decide(None, old, &proof, &verified, &keys);
}

/// Parses `data` as the witness's configuration file (`quire-witness run
/// --config`, read whole under its size limit before this) and checks it
/// as a start does (names, ranges, every log's and peer's key). Returns
/// whether the witness would take it.
pub fn witness_config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    toml::from_str::<crate::config::WitnessConfig>(text).is_ok_and(|c| c.validate().is_ok())
}
