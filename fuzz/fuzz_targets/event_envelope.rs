#![no_main]
//! Fuzz target `event_envelope`: the body is quire_core::fuzz_targets::event_envelope, which
//! the ordinary test suite also replays over fuzz/corpus/event_envelope.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_core::fuzz_targets::event_envelope(data);
});
