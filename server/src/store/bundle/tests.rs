//! Tests of [`super`]: every codec, ranges, appends, damaged records.

use super::*;

fn events(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"event\":\"login\",\"user\":{i}}}").into_bytes())
        .collect()
}

/// The record of the whole-bundle LZ4 codec, as written before frames.
fn whole_lz4(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![LZ4];
    out.extend_from_slice(&lz4_flex::block::compress_prepend_size(&payload_of(
        entries,
    )));
    out
}

#[test]
fn round_trip_raw_framed_and_the_older_whole_block() {
    for n in [1, 31, 32, 33, 200, 256] {
        let entries = events(n);
        let framed = encode(&entries, true);
        for rec in [encode(&entries, false), framed.clone(), whole_lz4(&entries)] {
            assert_eq!(decode(&rec).unwrap(), entries, "{n}");
        }
        if n > 1 {
            assert_eq!(framed[0], FRAMED, "{n}");
            assert!(framed.len() < encode(&entries, false).len());
        }
    }
    // Incompressible data stays raw.
    let noise: Vec<Vec<u8>> = (0..4u64)
        .map(|i| {
            (0..64u64)
                .flat_map(|j| {
                    (i * 977 + j * 7919)
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        .to_le_bytes()
                })
                .collect()
        })
        .collect();
    assert_eq!(encode(&noise, true)[0], RAW);
}

/// Entries of mixed sizes, every fourth one incompressible.
fn mixed(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i % 4 == 3 {
                (0..=(i % 97) as u64)
                    .map(|j| ((i as u64 * 131 + j).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
                    .collect()
            } else {
                format!("{{\"event\":\"login\",\"user\":{i}}}").into_bytes()
            }
        })
        .collect()
}

#[test]
fn appending_is_encoding_the_whole_bundle() {
    for (name, all) in [("events", events(256)), ("mixed", mixed(256))] {
        for have in [1, 5, 31, 32, 33, 63, 64, 100, 200, 255] {
            for add in [1, 2, 31, 32, 33, 156] {
                let n = (have + add).min(256);
                let (old, new) = (&all[..have], &all[have..n]);
                for compress in [false, true] {
                    let mut records = vec![encode(old, compress), encode(old, !compress)];
                    records.push(whole_lz4(old));
                    for rec in records {
                        let got = append(&rec, have, new, compress).unwrap();
                        assert_eq!(
                            decode(&got).unwrap(),
                            &all[..n],
                            "{name} {have}+{add} {compress} codec {}",
                            rec[0]
                        );
                        if rec[0] == encode(old, compress)[0] && rec == encode(old, compress) {
                            // From what encode wrote, the same bytes.
                            assert_eq!(
                                got,
                                encode(&all[..n], compress),
                                "{name} {have}+{add} {compress}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn appending_to_a_record_of_another_count_is_refused() {
    let all = events(100);
    for compress in [false, true] {
        for rec in [encode(&all[..40], false), encode(&all[..40], true)] {
            for have in [39, 41, 64, 70] {
                let e = append(&rec, have, &all[40..], compress).unwrap_err();
                assert!(matches!(e, StoreError::Corrupt(_)), "{have}: {e}");
            }
        }
    }
    assert!(append(&[], 1, &all, true).is_err());
    assert_eq!(append(&[], 0, &all, true).unwrap(), encode(&all, true));
    assert!(append(&[FRAMED, 7, 1, 0, 0, 0, 0], 1, &all, true).is_err());
    // A whole frame whose LZ4 size prefix asks for 4 GiB is refused
    // before anything is sized by it.
    let mut huge = vec![FRAMED, LZ4, 5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0];
    push_frame(&mut huge, RAW, &payload_of(&all[32..33]));
    for compress in [false, true] {
        let e = append(&huge, 33, &all[..1], compress).unwrap_err();
        assert!(e.to_string().contains("over the"), "{e}");
    }
    // Damaged records: an error or a record, never a panic; a record
    // only where the damage still decodes.
    let new = events(3);
    for rec in [
        encode(&all[..40], false),
        encode(&all[..40], true),
        encode(&mixed(70), true),
    ] {
        for at in 0..rec.len() {
            let mut bad = rec.clone();
            bad[at] ^= 0x5a;
            for have in [1, 31, 32, 40, 70] {
                for compress in [false, true] {
                    if let Ok(out) = append(&bad, have, &new, compress) {
                        assert!(
                            decode_range(&out, have, 256).is_ok_and(|t| t == new),
                            "{at} {have} {compress}"
                        );
                    }
                }
            }
        }
    }
}

/// The codec of each frame of a framed record.
fn frame_codecs(record: &[u8]) -> Vec<u8> {
    assert_eq!(record[0], FRAMED);
    frames(&record[1..])
        .unwrap()
        .iter()
        .map(|f| f.codec)
        .collect()
}

/// `n` incompressible entries.
fn noise(n: usize, seed: u64) -> Vec<Vec<u8>> {
    (0..n as u64)
        .map(|i| {
            (0..32u64)
                .flat_map(|j| {
                    ((seed << 32) ^ (i * 977 + j * 7919))
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        .rotate_left(29)
                        .wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
                        .to_le_bytes()
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_frame_that_did_not_shrink_spares_the_next_ones_the_try() {
    let f = FRAME_ENTRIES;
    let frames = |n: usize| events(u32::try_from(n * f).unwrap());
    // Frame 0 is noise, frames 1 to 7 compress well: 1 to 3 are not
    // tried, 4 is, and after it every frame is.
    let mut entries = noise(f, 1);
    entries.extend(frames(7));
    let rec = encode(&entries, true);
    assert_eq!(frame_codecs(&rec), [RAW, RAW, RAW, RAW, LZ4, LZ4, LZ4, LZ4]);
    assert_eq!(decode(&rec).unwrap(), entries);
    // Compressible frames, then noise, then compressible again: the frame
    // after the noise is not tried, the next multiple of 4 is.
    let mut entries = frames(2);
    entries.extend(noise(f, 2));
    entries.extend(frames(5));
    assert_eq!(
        frame_codecs(&encode(&entries, true)),
        [LZ4, LZ4, RAW, RAW, LZ4, LZ4, LZ4, LZ4]
    );
    // Appends, at every count, write what encoding the whole writes.
    for have in [1, f - 1, f, f + 1, 3 * f, 4 * f - 1, 4 * f + 3, 7 * f] {
        let got = append(
            &encode(&entries[..have], true),
            have,
            &entries[have..],
            true,
        )
        .unwrap();
        assert_eq!(got, encode(&entries, true), "{have}");
    }
}

#[test]
fn a_range_is_the_slice_of_the_whole_in_every_codec() {
    let entries = events(200);
    for rec in [
        encode(&entries, false),
        encode(&entries, true),
        whole_lz4(&entries),
    ] {
        for (a, b) in [
            (0, 1),
            (31, 33),
            (64, 96),
            (100, 101),
            (199, 200),
            (190, 256),
            (0, 256),
            (5, 5),
        ] {
            let want = &entries[a.min(200)..b.min(200)];
            assert_eq!(
                decode_range(&rec, a, b).unwrap(),
                want,
                "{a}..{b} codec {}",
                rec[0]
            );
        }
    }
}

#[test]
fn corrupt_records_are_errors() {
    assert!(decode(&[]).is_err());
    assert!(decode(&[9]).is_err());
    assert!(decode(&[RAW, 5, 0, 0, 0, 1]).is_err());
    assert!(decode(&[LZ4, 1, 2, 3]).is_err());
    // A damaged size prefix asking for 4 GiB is refused before any
    // allocation.
    let e = decode(&[LZ4, 0xff, 0xff, 0xff, 0xff, 0]).unwrap_err();
    assert!(e.to_string().contains("over the"), "{e}");
    let e = decode(&[FRAMED, LZ4, 5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]).unwrap_err();
    assert!(e.to_string().contains("over the"), "{e}");
    // Frames: one past the record, an unknown codec, an empty one, one
    // after a short one.
    assert!(decode(&[FRAMED, RAW, 9, 0, 0, 0, 1]).is_err());
    assert!(decode(&[FRAMED, 7, 1, 0, 0, 0, 0]).is_err());
    assert!(decode(&[FRAMED, RAW, 0, 0, 0, 0]).is_err());
    let one = [RAW, 5, 0, 0, 0, 1, 0, 0, 0, 42];
    let mut two = vec![FRAMED];
    two.extend_from_slice(&one);
    assert_eq!(decode(&two).unwrap(), [vec![42]]);
    two.extend_from_slice(&one);
    let e = decode(&two).unwrap_err();
    assert!(e.to_string().contains("after the last"), "{e}");
}
