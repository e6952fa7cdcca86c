#![no_main]
//! Fuzz target `cli_inputs`: the body is quire_client::fuzz_targets::cli_inputs, which the
//! ordinary test suite also replays over fuzz/corpus/cli_inputs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_client::fuzz_targets::cli_inputs(data);
});
