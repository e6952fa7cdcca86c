#![no_main]
//! Fuzz target `tlog_proof`: the body is quire_core::fuzz_targets::tlog_proof,
//! which the ordinary test suite also replays over fuzz/corpus/tlog_proof.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_core::fuzz_targets::tlog_proof(data);
});
