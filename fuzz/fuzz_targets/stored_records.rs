#![no_main]
//! Fuzz target `stored_records`: the body is quire_server::fuzz_targets::stored_records, which
//! the ordinary test suite also replays over fuzz/corpus/stored_records.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_server::fuzz_targets::stored_records(data);
});
