#![no_main]
//! Fuzz target `map_proof`: the body is quire_core::fuzz_targets::map_proof, which
//! the ordinary test suite also replays over fuzz/corpus/map_proof.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_core::fuzz_targets::map_proof(data);
});
