#![no_main]
//! Fuzz target `admin_files`: the body is quire_server::fuzz_targets::admin_files, which the
//! ordinary test suite also replays over fuzz/corpus/admin_files.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_server::fuzz_targets::admin_files(data);
});
