#![no_main]
//! Fuzz target `high_water`: the body is quire_server::fuzz_targets::high_water, which the
//! ordinary test suite also replays over fuzz/corpus/high_water.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_server::fuzz_targets::high_water(data);
});
