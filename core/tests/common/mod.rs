//! Shared test helpers: the naive RFC 9162 reference and a tree built with
//! quire-core into an in-memory node store.
#![allow(dead_code, clippy::unwrap_used, clippy::pedantic)]

use std::collections::HashMap;

use quire_core::{leaf_hash, CompactRange, Hash, NodeId};
use sha2::{Digest, Sha256};

/// The entry at index `i` of the test trees: distinct for every index.
pub fn entry(i: u64) -> Vec<u8> {
    format!("entry {i}").into_bytes()
}

/// RFC 9162 §2.1.1 MTH, written from the definition with the sha2 crate's
/// streaming API (not quire-core's hashing).
pub fn mth(leaves: &[Vec<u8>]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(&leaves[0]);
            h.finalize().into()
        }
        n => {
            let k = largest_pow2_below(n);
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

fn largest_pow2_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 9162 §2.1.3.1 PATH(m, D[n]).
pub fn path(m: usize, leaves: &[Vec<u8>]) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = largest_pow2_below(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
pub fn proof(m: usize, leaves: &[Vec<u8>]) -> Vec<[u8; 32]> {
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[Vec<u8>], b: bool) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = largest_pow2_below(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], b);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// A tree built with quire-core: every complete node in a map.
pub struct Tree {
    pub entries: Vec<Vec<u8>>,
    pub nodes: HashMap<NodeId, Hash>,
    /// The same nodes, densely at their post-order numbers.
    pub dense: Vec<Hash>,
    pub range: CompactRange,
    /// Root after each append: roots[s] is the root at size s.
    pub roots: Vec<Hash>,
}

impl Tree {
    pub fn new(size: u64) -> Tree {
        Tree::from_entries((0..size).map(entry).collect())
    }

    pub fn from_entries(entries: Vec<Vec<u8>>) -> Tree {
        let mut nodes = HashMap::new();
        let mut dense = Vec::new();
        let mut range = CompactRange::new();
        let mut roots = vec![range.root()];
        for e in &entries {
            range
                .append(leaf_hash(e), |id, h| {
                    assert!(nodes.insert(id, *h).is_none(), "node {id:?} reported twice");
                    assert_eq!(id.storage_index(), Some(dense.len() as u64));
                    dense.push(*h);
                })
                .unwrap();
            roots.push(range.root());
        }
        Tree {
            entries,
            nodes,
            dense,
            range,
            roots,
        }
    }
}

pub fn to_hashes(v: &[[u8; 32]]) -> Vec<Hash> {
    v.iter().map(|h| Hash(*h)).collect()
}
