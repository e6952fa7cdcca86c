#![no_main]
//! Fuzz target `witness_request`: the body is
//! quire_witness::fuzz_target::witness_request, which the ordinary test suite
//! also replays over fuzz/corpus/witness_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quire_witness::fuzz_target::witness_request(data);
});
