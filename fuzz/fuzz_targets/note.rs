#![no_main]
//! Fuzz target `note`: the body is quire_core::fuzz_targets::note, which the
//! ordinary test suite also replays over fuzz/corpus/note.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_core::fuzz_targets::note(data);
});
