#![no_main]
//! Fuzz target `key`: the body is quire_core::fuzz_targets::key, which the
//! ordinary test suite also replays over fuzz/corpus/key.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_core::fuzz_targets::key(data);
});
