//! quire-core against independent implementations from crates.io:
//! `tlog_tiles` (Go sumdb/tlog in Rust: numbering, roots, both proofs),
//! `ct-merkle` (RFC 6962 roots and proofs) and `rs_merkle` (roots with an
//! RFC hasher).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::Tree;
use proptest::prelude::*;
use quire_core::{
    prove_consistency, prove_inclusion, verify_consistency, verify_inclusion, Hash, NodeId,
};

/// quire-core's node store seen through tlog_tiles' reader, which asks by
/// Go's stored-hash index: this also checks that the numberings agree.
struct TlogReader<'a>(&'a Tree);

impl tlog_tiles::HashReader for TlogReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                let node = NodeId::from_storage_index(i).ok_or(tlog_tiles::Error::InvalidProof)?;
                let h = self
                    .0
                    .nodes
                    .get(&node)
                    .ok_or(tlog_tiles::Error::InvalidProof)?;
                Ok(tlog_tiles::Hash(h.0))
            })
            .collect()
    }
}

fn tl(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(h.0)
}

fn check_against_tlog_tiles(tree: &Tree, index: u64, old: u64, new: u64) {
    let reader = TlogReader(tree);
    // Numbering: Go's stored_hash_index is our storage_index.
    for (node, _) in tree.nodes.iter().take(200) {
        assert_eq!(
            tlog_tiles::stored_hash_index(node.level, node.index),
            node.storage_index().unwrap()
        );
    }
    let root = tree.roots[new as usize];
    assert_eq!(tlog_tiles::tree_hash(new, &reader).unwrap().0, root.0);

    let ours = prove_inclusion(&tree.nodes, index, new).unwrap();
    let theirs = tlog_tiles::prove_record(new, index, &reader).unwrap();
    assert_eq!(ours.iter().map(tl).collect::<Vec<_>>(), theirs);
    let leaf = quire_core::leaf_hash(&tree.entries[index as usize]);
    tlog_tiles::check_record(
        &ours.iter().map(tl).collect(),
        new,
        tl(&root),
        index,
        tl(&leaf),
    )
    .unwrap();
    verify_inclusion(
        &leaf,
        index,
        new,
        &theirs.iter().map(|h| Hash(h.0)).collect::<Vec<_>>(),
        &root,
    )
    .unwrap();

    let old_root = tree.roots[old as usize];
    let ours = prove_consistency(&tree.nodes, old, new).unwrap();
    let theirs = tlog_tiles::prove_tree(new, old, &reader).unwrap();
    assert_eq!(
        ours.iter().map(tl).collect::<Vec<_>>(),
        theirs,
        "{old}->{new}"
    );
    tlog_tiles::check_tree(
        &ours.iter().map(tl).collect(),
        new,
        tl(&root),
        old,
        tl(&old_root),
    )
    .unwrap();
    verify_consistency(
        old,
        new,
        &theirs.iter().map(|h| Hash(h.0)).collect::<Vec<_>>(),
        &old_root,
        &root,
    )
    .unwrap();
}

type CtTree = ct_merkle::mem_backed_tree::MemoryBackedTree<sha2_011::Sha256, Vec<u8>>;

fn check_against_ct_merkle(tree: &Tree, index: u64, old: u64) {
    let mut ct = CtTree::new();
    for e in &tree.entries {
        ct.push(e.clone());
    }
    let new = tree.entries.len() as u64;
    assert_eq!(
        ct.root().as_bytes().as_slice(),
        tree.range.root().0.as_slice()
    );

    let ours = prove_inclusion(&tree.nodes, index, new).unwrap();
    let theirs = ct.prove_inclusion(index as usize);
    assert_eq!(
        theirs.as_bytes(),
        ours.iter().flat_map(|h| h.0).collect::<Vec<_>>()
    );
    let our_proof = ct_merkle::InclusionProof::<sha2_011::Sha256>::from_bytes(
        ours.iter().flat_map(|h| h.0).collect(),
    );
    ct.root()
        .verify_inclusion(&tree.entries[index as usize], index, &our_proof)
        .unwrap();

    if old < new {
        let ours = prove_consistency(&tree.nodes, old, new).unwrap();
        let theirs = ct.prove_consistency((new - old) as usize);
        assert_eq!(
            theirs.as_bytes(),
            ours.iter().flat_map(|h| h.0).collect::<Vec<_>>()
        );
        let old_root =
            ct_merkle::RootHash::<sha2_011::Sha256>::new(tree.roots[old as usize].0.into(), old);
        let our_proof = ct_merkle::ConsistencyProof::<sha2_011::Sha256>::try_from_bytes(
            ours.iter().flat_map(|h| h.0).collect(),
        )
        .unwrap();
        ct.root().verify_consistency(&old_root, &our_proof).unwrap();
    }
}

/// rs_merkle with the RFC 9162 interior hash; leaves are given hashed.
#[derive(Clone)]
struct Rfc9162;

impl rs_merkle::Hasher for Rfc9162 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(data).into()
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        use sha2::Digest;
        match right {
            Some(r) => {
                let mut h = sha2::Sha256::new();
                h.update([1u8]);
                h.update(left);
                h.update(r);
                h.finalize().into()
            }
            None => *left,
        }
    }
}

fn check_against_rs_merkle(tree: &Tree) {
    let leaves: Vec<[u8; 32]> = tree
        .entries
        .iter()
        .map(|e| quire_core::leaf_hash(e).0)
        .collect();
    let rs = rs_merkle::MerkleTree::<Rfc9162>::from_leaves(&leaves);
    assert_eq!(rs.root(), Some(tree.range.root().0));
}

#[test]
fn fixed_sizes_against_all_peers() {
    for size in [1u64, 2, 3, 7, 8, 9, 255, 256, 257, 1000, 1024, 1025] {
        let tree = Tree::new(size);
        for index in [0, size / 2, size - 1] {
            for old in [1, size / 3 + 1, size] {
                check_against_tlog_tiles(&tree, index, old, size);
                check_against_ct_merkle(&tree, index, old);
            }
        }
        check_against_rs_merkle(&tree);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_against_all_peers(size in 1u64..1500, a in any::<u64>(), b in any::<u64>()) {
        let tree = Tree::new(size);
        let index = a % size;
        let old = b % size + 1;
        check_against_tlog_tiles(&tree, index, old, size);
        check_against_ct_merkle(&tree, index, old);
        check_against_rs_merkle(&tree);
    }
}
