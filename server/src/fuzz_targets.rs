//! Bodies of the server's fuzz targets (`fuzz/fuzz_targets/`), kept here so
//! that the ordinary test suite replays their corpora: decoding a stored
//! entry bundle, and reading a high-water record slot. Neither may panic or
//! allocate beyond its bound on any input.

/// Decodes `data` as a stored entry bundle; a decoded bundle re-encodes to
/// bundles that decode to the same entries.
///
/// # Panics
/// When that round trip fails: a bug the fuzzer is there to find.
pub fn bundle(data: &[u8]) {
    if let Ok(entries) = crate::store::bundle::decode(data) {
        assert!(entries.len() as u64 <= crate::store::bundle::BUNDLE_SIZE);
        for compress in [false, true] {
            let again = crate::store::bundle::encode(&entries, compress);
            assert_eq!(
                crate::store::bundle::decode(&again).ok(),
                Some(entries.clone())
            );
        }
    }
}

/// Parses `data` as a high-water record file (two slots).
pub fn high_water(data: &[u8]) {
    let _ = crate::highwater::parse_file(data);
}
