//! Bodies of the server's fuzz targets (`fuzz/fuzz_targets/`), kept here so
//! that the ordinary test suite replays their corpora: decoding a stored
//! entry bundle, reading a high-water record slot, and the files the admin
//! service reads and writes (a lifecycle record, the catalog of created
//! logs, an access policy). None may panic or allocate beyond its bound on
//! any input.

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

/// Reads `data` as the admin service's files: its first byte picks a
/// lifecycle record (a decoded one re-encodes to itself), the catalog of
/// created logs, or an access policy (checked whole, as `SetAccess` checks
/// one before writing it).
///
/// # Panics
/// When a lifecycle record's round trip fails.
pub fn admin_files(data: &[u8]) {
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 => {
            if let Ok(f) = crate::lifecycle::Frozen::decode(rest) {
                assert_eq!(crate::lifecycle::Frozen::decode(&f.encode()), Ok(f));
            }
        }
        1 => {
            let _ = crate::admin::catalog::parse(rest, std::path::Path::new("fuzz"));
        }
        _ => {
            let _ = crate::access::Policy::validate(
                std::path::Path::new("/nonexistent/quire-fuzz/access.toml"),
                rest,
            );
        }
    }
}
