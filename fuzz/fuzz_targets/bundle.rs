#![no_main]
//! Fuzz target `bundle`: the body is quire_server::fuzz_targets::bundle, which the
//! ordinary test suite also replays over fuzz/corpus/bundle.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_server::fuzz_targets::bundle(data);
});
