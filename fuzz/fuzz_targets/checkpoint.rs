#![no_main]
//! Fuzz target `checkpoint`: the body is quire_core::fuzz_targets::checkpoint, which the
//! ordinary test suite also replays over fuzz/corpus/checkpoint.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_core::fuzz_targets::checkpoint(data);
});
