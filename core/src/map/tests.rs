//! The map against its definition (a root computed from the whole key
//! set, recursively, as `docs/EVENTS.md` §11 states it), its proofs for
//! keys present and absent, and proofs altered in every part.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::{bit, leaf_hash, node_hash, KeyMap, MapProof, MapProofError, EMPTY};
use crate::Hash;

/// The root by the definition: empty, one leaf, or a node over the keys
/// whose bit at `depth` is 0 and those whose bit is 1.
fn reference_root(keys: &BTreeMap<Hash, u64>) -> Hash {
    fn at(depth: usize, leaves: &[(Hash, u64)]) -> Hash {
        match leaves {
            [] => EMPTY,
            [(k, i)] => leaf_hash(k, *i),
            _ => {
                let (l, r): (Vec<_>, Vec<_>) = leaves.iter().partition(|(k, _)| !bit(k, depth));
                node_hash(&at(depth + 1, &l), &at(depth + 1, &r))
            }
        }
    }
    let leaves: Vec<(Hash, u64)> = keys.iter().map(|(k, i)| (*k, *i)).collect();
    at(0, &leaves)
}

fn key(n: u64) -> Hash {
    Hash(Sha256::digest(n.to_be_bytes()).into())
}

#[test]
fn the_empty_map_has_the_empty_root_and_proves_absence() {
    let m = KeyMap::new();
    assert_eq!(m.root(), EMPTY);
    let p = m.prove(&key(1));
    assert_eq!(p.siblings.len(), 0);
    assert_eq!(p.verify(&key(1), &EMPTY), Ok(None));
}

#[test]
fn one_key_is_a_leaf_at_the_root() {
    let mut m = KeyMap::new();
    m.update(vec![(key(1), 7)]);
    assert_eq!(m.root(), leaf_hash(&key(1), 7));
    assert_eq!(m.prove(&key(1)).verify(&key(1), &m.root()), Ok(Some(7)));
    // Another key's proof ends at that leaf and shows it absent.
    assert_eq!(m.prove(&key(2)).verify(&key(2), &m.root()), Ok(None));
}

#[test]
fn a_later_update_of_a_key_wins_and_the_old_map_stays() {
    let mut m = KeyMap::new();
    m.update(vec![(key(1), 1), (key(2), 2), (key(1), 3)]);
    assert_eq!(m.get(&key(1)), Some(3));
    assert_eq!(m.len(), 2);
    let old = m.clone();
    m.update(vec![(key(2), 9), (key(4), 4)]);
    assert_eq!((old.get(&key(2)), m.get(&key(2))), (Some(2), Some(9)));
    assert_eq!(
        old.root(),
        reference_root(&[(key(1), 3), (key(2), 2)].into())
    );
    assert_eq!(m.len(), 3);
}

/// Every way one part of a proof can be changed.
fn mutations(p: &MapProof) -> Vec<MapProof> {
    let mut out = Vec::new();
    for i in 0..p.siblings.len() {
        let mut q = p.clone();
        q.siblings[i].0[31] ^= 1;
        out.push(q);
        let mut q = p.clone();
        q.siblings.remove(i);
        out.push(q);
    }
    let mut q = p.clone();
    q.siblings.push(Hash([7; 32]));
    out.push(q);
    let mut q = p.clone();
    q.siblings.insert(0, EMPTY);
    out.push(q);
    if let Some((k, i)) = p.leaf {
        let mut q = p.clone();
        q.leaf = Some((k, i + 1));
        out.push(q);
        let mut q = p.clone();
        q.leaf = None;
        out.push(q);
    } else {
        let mut q = p.clone();
        q.leaf = Some((key(999_999), 0));
        out.push(q);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Batches of updates give the root of the definition over the keys
    /// they leave, and every proof verifies to what the map holds, and no
    /// altered proof verifies.
    #[test]
    fn batches_match_the_definition_and_proofs_verify(
        batches in prop::collection::vec(prop::collection::vec((0u64..200, 0u64..1_000_000), 0..40), 1..6),
        removals in prop::collection::vec(prop::collection::vec(0u64..210, 0..10), 6),
    ) {
        let mut m = KeyMap::new();
        let mut model = BTreeMap::new();
        for (batch, gone) in batches.into_iter().zip(removals) {
            let updates: Vec<(Hash, u64)> = batch.iter().map(|(k, i)| (key(*k), *i)).collect();
            for (k, i) in &updates {
                model.insert(*k, *i);
            }
            m.update(updates);
            prop_assert_eq!(m.root(), reference_root(&model));
            prop_assert_eq!(m.len(), model.len());
            for k in gone {
                let k = key(k);
                prop_assert_eq!(m.remove(&k), model.remove(&k).is_some());
                prop_assert_eq!(m.root(), reference_root(&model));
            }
            prop_assert_eq!(m.len(), model.len());
        }
        let root = m.root();
        for n in 0..210u64 {
            let k = key(n);
            let p = m.prove(&k);
            prop_assert_eq!(p.verify(&k, &root), Ok(model.get(&k).copied()));
            prop_assert_eq!(m.get(&k), model.get(&k).copied());
            for q in mutations(&p) {
                let got = q.verify(&k, &root);
                prop_assert!(got.is_err(), "altered proof {:?} verified: {:?}", q, got);
            }
            // Nor does it prove another key.
            let other = key(n + 1000);
            if !model.contains_key(&other) {
                if let Ok(Some(_)) = p.verify(&other, &root) {
                    prop_assert!(false, "the proof of one key proves another");
                }
            }
        }
    }
}

#[test]
fn a_leaf_off_the_path_and_a_proof_too_long_are_named() {
    let mut m = KeyMap::new();
    m.update((0..50).map(|n| (key(n), n)).collect());
    let root = m.root();
    let k = key(3);
    let mut p = m.prove(&k);
    assert!(!p.siblings.is_empty());
    // A leaf of a key on another path.
    let off = (100..400)
        .map(key)
        .find(|o| bit(o, 0) != bit(&k, 0))
        .unwrap();
    p.leaf = Some((off, 1));
    assert!(matches!(
        p.verify(&k, &root),
        Err(MapProofError::OffPath { .. })
    ));
    let long = MapProof {
        siblings: vec![EMPTY; 257],
        leaf: None,
    };
    assert_eq!(long.verify(&k, &root), Err(MapProofError::TooLong(257)));
}

/// The vectors of `docs/events/map_vectors.json`, made by an independent
/// Python implementation of the definition: the same roots, the same
/// proofs, and each proof verifies to what the map holds.
#[test]
fn the_python_vectors_agree() {
    let text = include_str!("../../../docs/events/map_vectors.json");
    let cases: serde_json::Value = serde_json::from_str(text).unwrap();
    let hash = |v: &serde_json::Value| Hash::from_hex(v.as_str().unwrap()).unwrap();
    let field = |v: &serde_json::Value| crate::event::KeyField::parse(v.as_str().unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let mut m = KeyMap::new();
        m.update(
            case["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let k = crate::event::key(field(&e["field"]), e["value"].as_str().unwrap());
                    (k, e["index"].as_u64().unwrap())
                })
                .collect(),
        );
        let root = hash(&case["root"]);
        assert_eq!(m.root(), root, "{}", case["name"]);
        for p in case["proofs"].as_array().unwrap() {
            let k = crate::event::key(field(&p["field"]), p["value"].as_str().unwrap());
            assert_eq!(k, hash(&p["key"]));
            let want = MapProof {
                siblings: p["siblings"].as_array().unwrap().iter().map(hash).collect(),
                leaf: p["leaf"]
                    .as_object()
                    .map(|l| (hash(&l["key"]), l["index"].as_u64().unwrap())),
            };
            assert_eq!(m.prove(&k), want, "{} {}", case["name"], p["value"]);
            assert_eq!(want.verify(&k, &root), Ok(p["found"].as_u64()));
        }
    }
}

#[test]
fn a_head_is_read_only_in_its_one_form() {
    use crate::event::{Envelope, Event, Links};
    use crate::map::{head_of, HEAD_TYPE, LOG_SUBMITTER};
    let root = key(1);
    let head = |submitter: &str, kind: &str, size: &str, root: &str| {
        let mut event = Event::new(kind, LOG_SUBMITTER, "map");
        event.attributes.insert("size".into(), size.into());
        event.attributes.insert("root".into(), root.into());
        Envelope {
            log_time_ms: 1,
            submitter: submitter.into(),
            tenant: None,
            event,
            payload: None,
            prev: Links::default(),
        }
    };
    let hex = root.to_hex();
    assert_eq!(
        head_of(&head(LOG_SUBMITTER, HEAD_TYPE, "12", &hex)),
        Some((12, root))
    );
    assert_eq!(
        head_of(&head(LOG_SUBMITTER, HEAD_TYPE, "0", &hex)),
        Some((0, root))
    );
    for (submitter, kind, size, r) in [
        ("token:x", HEAD_TYPE, "12", hex.clone()),
        (LOG_SUBMITTER, "quire.erasure", "12", hex.clone()),
        (LOG_SUBMITTER, HEAD_TYPE, "012", hex.clone()),
        (LOG_SUBMITTER, HEAD_TYPE, "+12", hex.clone()),
        (LOG_SUBMITTER, HEAD_TYPE, "12", hex.to_uppercase()),
        (LOG_SUBMITTER, HEAD_TYPE, "12", hex[1..].to_owned()),
    ] {
        assert_eq!(
            head_of(&head(submitter, kind, size, &r)),
            None,
            "{submitter} {kind} {size} {r}"
        );
    }
}
