#![no_main]
//! Fuzz target `witness_config`: the body is quire_witness::fuzz_target::witness_config, which
//! the ordinary test suite also replays over fuzz/corpus/witness_config.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_witness::fuzz_target::witness_config(data);
});
