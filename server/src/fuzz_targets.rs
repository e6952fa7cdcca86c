//! Bodies of the server's fuzz targets (`fuzz/fuzz_targets/`), kept here so
//! that the ordinary test suite replays their corpora: decoding a stored
//! entry bundle, reading a high-water record slot, the files the admin
//! service reads and writes (a lifecycle record, the catalog of created
//! logs, an access policy), and the small records storage keeps beside the
//! tree (payloads, payload chunks, the leaf index's state, a dropped-entries
//! record, redb's head, a PostgreSQL row of the bundle still filling), and
//! the server's configuration file. None may
//! panic or allocate beyond its bound on any input.

/// Decodes `data` as a stored entry bundle; a decoded bundle re-encodes to
/// bundles that decode to the same entries, and every range of a decoded
/// bundle is the slice of the whole. Ranges of any record are decoded too
/// (frames they skip are not read, so they may succeed where the whole
/// fails, never panic). Entries are appended to any record as a commit
/// appends them: to a valid one, the result decodes to its entries and
/// the new ones.
///
/// # Panics
/// When that round trip fails: a bug the fuzzer is there to find.
pub fn bundle(data: &[u8]) {
    use crate::store::bundle::{append, decode, decode_range, encode, BUNDLE_SIZE};
    let (a, b) = match data {
        [x, y, ..] => (usize::from(*x), usize::from(*x) + usize::from(*y)),
        _ => (0, 1),
    };
    let _ = decode_range(data, a, b);
    let new = [
        data.get(..a.min(data.len())).unwrap_or_default().to_vec(),
        vec![7; b - a],
    ];
    for compress in [false, true] {
        let _ = append(data, a, &new, compress);
    }
    if let Ok(entries) = decode(data) {
        if (entries.len() + new.len()) as u64 <= BUNDLE_SIZE {
            let mut all = entries.clone();
            all.extend_from_slice(&new);
            for compress in [false, true] {
                let appended = append(data, entries.len(), &new, compress);
                assert_eq!(appended.and_then(|r| decode(&r)).ok(), Some(all.clone()));
            }
        }
        assert!(entries.len() as u64 <= BUNDLE_SIZE);
        let whole = entries.get(a.min(entries.len())..b.min(entries.len()));
        assert_eq!(decode_range(data, a, b).ok().as_deref(), whole);
        for compress in [false, true] {
            let again = encode(&entries, compress);
            assert_eq!(decode(&again).ok(), Some(entries.clone()));
            assert_eq!(decode_range(&again, a, b).ok().as_deref(), whole);
        }
    }
}

/// Parses `data` as a high-water record file (two slots).
pub fn high_water(data: &[u8]) {
    let _ = crate::highwater::parse_file(data);
}

/// Reads `data` as the admin service's files: its first byte picks a
/// lifecycle record (a decoded one re-encodes to itself), the catalog of
/// created logs, an access policy (checked whole, as `SetAccess` checks
/// one before writing it), a formation's key seed (a seed that parses
/// derives the same keys twice), or a row of a formation's catalog.
///
/// # Panics
/// When a lifecycle record's round trip fails, or a seed derives two sets
/// of keys.
pub fn admin_files(data: &[u8]) {
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 5 {
        3 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(seed) = crate::formation::KeySeed::parse(text.trim()) {
                let once = seed
                    .derive("fuzz.example/log")
                    .map(|k| crate::formation::vkeys(&k));
                let again = seed
                    .derive("fuzz.example/log")
                    .map(|k| crate::formation::vkeys(&k));
                assert_eq!(once, again);
            }
        }
        4 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = crate::admin::formation::parse_settings("fuzz.example/log", text);
            }
        }
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

/// Decodes `data` as one of the records storage keeps beside the tree, by
/// its first byte: an event's payload record, a chunk of payload records
/// (its first event's index in the next 8 bytes), the redb leaf index's
/// state, a frozen log's dropped-entries record, or redb's head record.
/// Whatever decodes encodes back to what decodes the same. Returns whether
/// the record decoded.
///
/// # Panics
/// When a round trip fails: a bug the fuzzer is there to find.
pub fn stored_records(data: &[u8]) -> bool {
    use crate::store::events::{
        decode_chunk, decode_payload, encode_chunk, encode_erased, payload_parts, Payload,
    };
    let Some((pick, rest)) = data.split_first() else {
        return false;
    };
    match pick % 6 {
        0 => match decode_payload(7, rest) {
            Ok(Payload::Stored(p)) => {
                assert_eq!(payload_parts(&p).concat(), rest);
                true
            }
            Ok(Payload::Erased { by }) => {
                assert_eq!(encode_erased(by), rest);
                true
            }
            Err(_) => false,
        },
        1 => {
            let Some((first, chunk)) = rest.split_first_chunk::<8>() else {
                return false;
            };
            let first = u64::from_be_bytes(*first);
            let Ok(records) = decode_chunk(first, chunk) else {
                return false;
            };
            let again = encode_chunk(&records);
            assert_eq!(decode_chunk(first, &again).ok(), Some(records));
            true
        }
        2 => {
            use crate::store::leaf_index::IndexState;
            let Ok(state) = IndexState::decode(rest) else {
                return false;
            };
            assert_eq!(IndexState::decode(&state.encode()).ok(), Some(state));
            true
        }
        3 => {
            let Ok(d) = crate::lifecycle::Dropped::decode(rest) else {
                return false;
            };
            assert_eq!(crate::lifecycle::Dropped::decode(&d.encode()), Ok(d));
            true
        }
        5 => {
            // A PostgreSQL row of the bundle still filling: its index, its
            // count, its data.
            use crate::store::postgres::filling::{decode, encode};
            let Some((idx, rest)) = rest.split_first_chunk::<8>() else {
                return false;
            };
            let Some((n, data)) = rest.split_first() else {
                return false;
            };
            let idx = u64::from_be_bytes(*idx);
            let Ok(entries) = decode(idx, i32::from(*n), data.to_vec()) else {
                return false;
            };
            for compress in [false, true] {
                let again = encode(&entries, compress).map(|(n, d)| decode(idx, n, d));
                assert_eq!(again.ok().and_then(Result::ok), Some(entries.clone()));
            }
            true
        }
        _ => {
            use crate::store::redb::layout::{decode_head, encode_head};
            let Ok(h) = decode_head(rest) else {
                return false;
            };
            assert_eq!(encode_head(h).as_slice(), rest);
            true
        }
    }
}

/// Parses `data` as the server's configuration file (`quire-server
/// --config`, read whole under its size limit before this) and checks it
/// as a start does. Returns whether it is a configuration the server
/// would take.
pub fn config_file(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(config) = toml::from_str::<crate::config::Config>(text) else {
        return false;
    };
    config.validate().is_ok()
        && config.check_unique_logs().is_ok()
        && config.logs.iter().all(|l| l.validate(&config).is_ok())
}
