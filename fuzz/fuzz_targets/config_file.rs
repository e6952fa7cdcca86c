#![no_main]
//! Fuzz target `config_file`: the body is quire_server::fuzz_targets::config_file, which the
//! ordinary test suite also replays over fuzz/corpus/config_file.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_server::fuzz_targets::config_file(data);
});
