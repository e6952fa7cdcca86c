//! quire-core's trees and proofs against a naive recursive implementation of
//! the RFC 9162 definitions: exhaustively for small trees, by property tests
//! for larger ones, and with mutated proofs that must all fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::{entry, mth, path, proof, to_hashes, Tree};
use proptest::prelude::*;
use quire_core::{
    leaf_hash, prove_consistency, prove_inclusion, root_at, verify_consistency, verify_inclusion,
    ConsistencyError, Hash, InclusionError,
};

/// Every way to break one proof: each single-bit flip, truncation at either
/// end, and an extra hash at either end.
fn mutations(p: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for i in 0..p.len() {
        for bit in 0..256 {
            let mut m = p.to_vec();
            m[i].0[bit / 8] ^= 1 << (bit % 8);
            out.push(m);
        }
    }
    if !p.is_empty() {
        out.push(p[1..].to_vec());
        out.push(p[..p.len() - 1].to_vec());
    }
    let extra = leaf_hash(b"extra");
    let mut m = p.to_vec();
    m.push(extra);
    out.push(m);
    let mut m = vec![extra];
    m.extend_from_slice(p);
    out.push(m);
    out
}

fn check_inclusion(tree: &Tree, index: u64, size: u64, all_mutations: bool) {
    let leaves = &tree.entries[..size as usize];
    let root = tree.roots[size as usize];
    let leaf = leaf_hash(&tree.entries[index as usize]);
    let got = prove_inclusion(&tree.nodes, index, size).unwrap();
    assert_eq!(
        prove_inclusion(tree.dense.as_slice(), index, size).unwrap(),
        got
    );
    assert_eq!(
        got,
        to_hashes(&path(index as usize, leaves)),
        "PATH({index}, {size})"
    );
    verify_inclusion(&leaf, index, size, &got, &root).unwrap();

    if all_mutations {
        for m in mutations(&got) {
            assert!(verify_inclusion(&leaf, index, size, &m, &root).is_err());
        }
    }
    // Wrong leaf, wrong root.
    let other = leaf_hash(b"not in the tree");
    assert!(matches!(
        verify_inclusion(&other, index, size, &got, &root),
        Err(InclusionError::RootMismatch { .. })
    ));
    assert!(verify_inclusion(&leaf, index, size, &got, &other).is_err());
    // Wrong index: fails (every entry differs, so a wrong position can only
    // verify through a hash collision).
    for j in [index.wrapping_sub(1), index + 1, index ^ 1, size] {
        if j != index {
            assert!(
                verify_inclusion(&leaf, j, size, &got, &root).is_err(),
                "index {j}"
            );
        }
    }
    // Wrong size, against that size's root: verifies only where the RFC
    // path of that size is the very same list of hashes (the path does not
    // bind the size; the signed checkpoint does).
    for s in [size - 1, size + 1, size * 2] {
        if s == size || s == 0 || s as usize > tree.entries.len() || index >= s {
            continue;
        }
        let ok = verify_inclusion(&leaf, index, s, &got, &tree.roots[s as usize]).is_ok();
        let same = to_hashes(&path(index as usize, &tree.entries[..s as usize])) == got;
        assert_eq!(ok, same, "proof for size {size} checked at size {s}");
    }
}

fn check_consistency(tree: &Tree, old: u64, new: u64, all_mutations: bool) {
    let got = prove_consistency(&tree.nodes, old, new).unwrap();
    assert_eq!(
        prove_consistency(tree.dense.as_slice(), old, new).unwrap(),
        got
    );
    let want = to_hashes(&proof(old as usize, &tree.entries[..new as usize]));
    assert_eq!(got, want, "PROOF({old}, {new})");
    let (r1, r2) = (tree.roots[old as usize], tree.roots[new as usize]);
    verify_consistency(old, new, &got, &r1, &r2).unwrap();
    if all_mutations {
        for m in mutations(&got) {
            assert!(verify_consistency(old, new, &m, &r1, &r2).is_err());
        }
    }
    let other = leaf_hash(b"other root");
    assert!(verify_consistency(old, new, &got, &other, &r2).is_err());
    assert!(verify_consistency(old, new, &got, &r1, &other).is_err());
    // Other sizes against their own roots: only where the RFC proof for those
    // sizes is this very list.
    for (m, n) in [
        (old + 1, new),
        (old.wrapping_sub(1), new),
        (old, new + 1),
        (old, new - 1),
    ] {
        if m == 0 || m > n || n as usize > tree.entries.len() || (m, n) == (old, new) {
            continue;
        }
        let ok = verify_consistency(m, n, &got, &tree.roots[m as usize], &tree.roots[n as usize])
            .is_ok();
        let same = to_hashes(&proof(m as usize, &tree.entries[..n as usize])) == got;
        assert_eq!(ok, same, "proof {old}->{new} checked as {m}->{n}");
    }
}

#[test]
fn roots_match_mth_at_every_size() {
    let tree = Tree::new(300);
    for size in 0..=300u64 {
        let want = Hash(mth(&tree.entries[..size as usize]));
        assert_eq!(tree.roots[size as usize], want, "size {size}");
        assert_eq!(root_at(&tree.nodes, size).unwrap(), want, "root_at({size})");
    }
}

#[test]
fn every_inclusion_proof_of_small_trees() {
    let tree = Tree::new(70);
    for size in 1..=64u64 {
        for index in 0..size {
            check_inclusion(&tree, index, size, size <= 17);
        }
    }
}

#[test]
fn every_consistency_proof_of_small_trees() {
    let tree = Tree::new(70);
    for new in 1..=64u64 {
        for old in 1..=new {
            check_consistency(&tree, old, new, new <= 17);
        }
    }
}

#[test]
fn edge_cases_of_the_semantics() {
    let tree = Tree::new(8);
    let (r4, r8) = (tree.roots[4], tree.roots[8]);
    // m = n: empty proof and equal roots.
    assert_eq!(verify_consistency(8, 8, &[], &r8, &r8), Ok(()));
    assert!(matches!(
        verify_consistency(8, 8, &[r4], &r8, &r8),
        Err(ConsistencyError::NonEmptyForEqualSizes { size: 8, len: 1 })
    ));
    assert!(matches!(
        verify_consistency(8, 8, &[], &r4, &r8),
        Err(ConsistencyError::DifferentRootsSameSize { size: 8, .. })
    ));
    // m = 0 cannot be proven, m > n is rejected.
    assert_eq!(
        verify_consistency(0, 8, &[], &tree.roots[0], &r8),
        Err(ConsistencyError::FromEmptyTree)
    );
    assert!(matches!(
        verify_consistency(9, 8, &[], &r8, &r8),
        Err(ConsistencyError::OldSizeAboveNew { old: 9, new: 8 })
    ));
    // index >= size.
    let leaf = leaf_hash(&entry(0));
    assert!(matches!(
        verify_inclusion(&leaf, 8, 8, &[], &r8),
        Err(InclusionError::IndexOutOfRange { index: 8, size: 8 })
    ));
    assert!(matches!(
        verify_inclusion(&leaf, u64::MAX, u64::MAX, &[], &r8),
        Err(InclusionError::IndexOutOfRange { .. })
    ));
    // Over 63 hashes.
    let long = vec![r8; 64];
    assert!(matches!(
        verify_inclusion(&leaf, 0, u64::MAX, &long, &r8),
        Err(InclusionError::TooLong { len: 64 })
    ));
    assert!(matches!(
        verify_consistency(3, u64::MAX, &long, &r4, &r8),
        Err(ConsistencyError::TooLong { len: 64 })
    ));
    // A size-1 tree: the root is the leaf and the proof is empty.
    verify_inclusion(&leaf, 0, 1, &[], &tree.roots[1]).unwrap();
    // The mismatch error carries both roots.
    // (Size 3 is not a power of two, so the proof carries its own seed and
    // yields the real old root whatever root is claimed.)
    let p = prove_consistency(&tree.nodes, 3, 8).unwrap();
    match verify_consistency(3, 8, &p, &r8, &r8) {
        Err(ConsistencyError::RootMismatch(m)) => {
            assert_eq!((m.old, m.new), (3, 8));
            assert_eq!((m.expected_old, m.expected_new), (r8, r8));
            assert_eq!((m.computed_old, m.computed_new), (tree.roots[3], r8));
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_match_the_reference(size in 1u64..3000, a in any::<u64>(), b in any::<u64>()) {
        let tree = Tree::new(size);
        prop_assert_eq!(tree.range.root(), Hash(mth(&tree.entries)));
        let index = a % size;
        check_inclusion(&tree, index, size, true);
        let (x, y) = (a % size + 1, b % size + 1);
        let (old, new) = (x.min(y), x.max(y));
        check_consistency(&tree, old, new, true);
    }
}

/// Sizes past 2^63 (beyond any tree Quire builds) are still answered with an
/// error, never a panic: the fuzzer found a shift by 64 there.
#[test]
fn sizes_above_2_63_are_errors_not_panics() {
    let h = quire_core::Hash([3; 32]);
    for size in [1u64 << 63, (1 << 63) + 1, u64::MAX] {
        for index in [0, 1, (1 << 63) - 1, 1 << 63, size - 1] {
            let path = vec![h; 63];
            assert!(quire_core::verify_inclusion(&h, index, size, &path, &h).is_err());
            assert!(quire_core::verify_inclusion(&h, index, size, &path[..10], &h).is_err());
        }
        for old in [1u64, 5, 0x00ff_ffff_ffff_ffff, (1 << 63) - 1, 1 << 63] {
            if old < size {
                let path = vec![h; 40];
                assert!(quire_core::verify_consistency(old, size, &path, &h, &h).is_err());
            }
        }
    }
}
