#![no_main]
//! Fuzz target `proof`: the body is quire_core::fuzz_targets::proof, which the
//! ordinary test suite also replays over fuzz/corpus/proof.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_core::fuzz_targets::proof(data);
});
