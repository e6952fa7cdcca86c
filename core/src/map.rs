//! The key map of a log in event mode (`docs/EVENTS.md` §11): a sparse
//! Merkle tree from each key ([`crate::event::key`]) to the index of the
//! newest event of that key, whose root the log commits to in its own
//! tree (map head events), so that a keyed query proves that no event of
//! the key was left out.
//!
//! The tree is binary over the 256 bits of the key, most significant bit
//! first, with every subtree that holds one leaf replaced by that leaf
//! (as in the sparse Merkle trees of Diem and of key-transparency
//! directories), so its depth is about log2 of the number of keys:
//!
//! - the empty tree: 32 zero bytes ([`EMPTY`]);
//! - a leaf: SHA-256(0x00 ‖ key ‖ index as 8 bytes big-endian);
//! - a node: SHA-256(0x01 ‖ left ‖ right).
//!
//! **In scope**: the tree ([`KeyMap`], persistent: an update copies the
//! paths it changes and shares the rest, so an older map stays readable),
//! its root, a proof of one key ([`MapProof`]) and its verification, and
//! what a map head event commits to ([`head_of`], §11.2).
//! **Out of scope**: where the map is kept and when it is updated (the
//! server), what a key means (the envelope).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::event::Envelope;
use crate::Hash;

/// The type of a map head event.
pub const HEAD_TYPE: &str = "quire.map";

/// The submitter (and actor) of the log's own events: no caller is
/// named so.
pub const LOG_SUBMITTER: &str = "server";

/// The map size and root a map head event commits to, when `env` is one:
/// written by the log itself ([`LOG_SUBMITTER`]), of type [`HEAD_TYPE`],
/// with attributes `size` (decimal, no sign or leading zero) and `root`
/// (64 lowercase hex digits).
pub fn head_of(env: &Envelope) -> Option<(u64, Hash)> {
    if env.submitter != LOG_SUBMITTER || env.event.kind != HEAD_TYPE {
        return None;
    }
    let size = env.event.attributes.get("size")?;
    let root = env.event.attributes.get("root")?;
    if (size.starts_with('0') && size != "0") || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hash = Hash::from_hex(root)?;
    (hash.to_hex() == *root).then_some((size.parse().ok()?, hash))
}

/// The root of the empty map.
pub const EMPTY: Hash = Hash([0u8; 32]);

/// The most siblings a proof may have: one per bit of a key.
pub const MAX_DEPTH: usize = 256;

/// The hash of a leaf: key `key` maps to event `index`.
pub fn leaf_hash(key: &Hash, index: u64) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(key.0);
    h.update(index.to_be_bytes());
    Hash(h.finalize().into())
}

/// The hash of a node from its two children.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Bit `i` of `key`, most significant first.
fn bit(key: &Hash, i: usize) -> bool {
    (key.0[i / 8] >> (7 - i % 8)) & 1 == 1
}

#[derive(Debug)]
enum Node {
    Empty,
    Leaf {
        key: Hash,
        index: u64,
        hash: Hash,
    },
    Inner {
        left: Arc<Node>,
        right: Arc<Node>,
        hash: Hash,
    },
}

impl Node {
    fn hash(&self) -> Hash {
        match self {
            Node::Empty => EMPTY,
            Node::Leaf { hash, .. } | Node::Inner { hash, .. } => *hash,
        }
    }
}

/// The map: persistent, so a clone is cheap and later updates leave it
/// as it was.
#[derive(Clone, Debug)]
pub struct KeyMap {
    root: Arc<Node>,
    len: usize,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap {
            root: Arc::new(Node::Empty),
            len: 0,
        }
    }
}

impl KeyMap {
    /// The empty map.
    pub fn new() -> Self {
        KeyMap::default()
    }

    /// How many keys it maps.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it maps no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its root hash.
    pub fn root(&self) -> Hash {
        self.root.hash()
    }

    /// Sets each key of `updates` to its index (a key given twice: the
    /// last wins), hashing each changed node once.
    pub fn update(&mut self, mut updates: Vec<(Hash, u64)>) {
        if updates.is_empty() {
            return;
        }
        // Sorted by key, the last of each key kept.
        updates.reverse();
        updates.sort_by_key(|u| u.0);
        updates.dedup_by(|later, earlier| later.0 == earlier.0);
        let mut added = 0;
        self.root = update(&self.root, 0, &updates, &mut added);
        self.len += added;
    }

    /// Removes `key` (a subtree left with one leaf becomes that leaf).
    /// Returns whether it was there.
    pub fn remove(&mut self, key: &Hash) -> bool {
        match remove(&self.root, 0, key) {
            Some(root) => {
                self.root = root;
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// The index `key` maps to.
    pub fn get(&self, key: &Hash) -> Option<u64> {
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match node.as_ref() {
                Node::Empty => return None,
                Node::Leaf { key: k, index, .. } => return (k == key).then_some(*index),
                Node::Inner { left, right, .. } => {
                    node = if bit(key, depth) { right } else { left };
                    depth += 1;
                }
            }
        }
    }

    /// The proof of what `key` maps to (an index, or nothing).
    pub fn prove(&self, key: &Hash) -> MapProof {
        let mut siblings = Vec::new();
        let mut node = &self.root;
        loop {
            match node.as_ref() {
                Node::Empty => {
                    return MapProof {
                        siblings,
                        leaf: None,
                    }
                }
                Node::Leaf { key: k, index, .. } => {
                    return MapProof {
                        siblings,
                        leaf: Some((*k, *index)),
                    }
                }
                Node::Inner { left, right, .. } => {
                    if bit(key, siblings.len()) {
                        siblings.push(left.hash());
                        node = right;
                    } else {
                        siblings.push(right.hash());
                        node = left;
                    }
                }
            }
        }
    }
}

/// `node` at `depth` with `updates` (sorted, one per key, all under this
/// node's path) applied; `added` counts keys that were not there.
fn update(node: &Arc<Node>, depth: usize, updates: &[(Hash, u64)], added: &mut usize) -> Arc<Node> {
    if updates.is_empty() {
        return Arc::clone(node);
    }
    match node.as_ref() {
        Node::Empty => {
            *added += updates.len();
            build(depth, updates)
        }
        Node::Leaf { key, index, .. } => {
            let mut all = updates.to_vec();
            if let Err(at) = all.binary_search_by(|(k, _)| k.cmp(key)) {
                all.insert(at, (*key, *index));
                // The leaf's own key was there already.
                *added += updates.len();
            } else {
                *added += updates.len() - 1;
            }
            build(depth, &all)
        }
        Node::Inner { left, right, .. } => {
            let split = updates.partition_point(|(k, _)| !bit(k, depth));
            let left = update(left, depth + 1, &updates[..split], added);
            let right = update(right, depth + 1, &updates[split..], added);
            inner(left, right)
        }
    }
}

/// `node` at `depth` without `key`; `None` when `key` is not there.
fn remove(node: &Arc<Node>, depth: usize, key: &Hash) -> Option<Arc<Node>> {
    match node.as_ref() {
        Node::Empty => None,
        Node::Leaf { key: k, .. } => (k == key).then(|| Arc::new(Node::Empty)),
        Node::Inner { left, right, .. } => {
            let (left, right) = if bit(key, depth) {
                (Arc::clone(left), remove(right, depth + 1, key)?)
            } else {
                (remove(left, depth + 1, key)?, Arc::clone(right))
            };
            // A subtree of one leaf is that leaf.
            Some(match (left.as_ref(), right.as_ref()) {
                (Node::Empty | Node::Leaf { .. }, Node::Empty) => left,
                (Node::Empty, Node::Leaf { .. }) => right,
                _ => inner(left, right),
            })
        }
    }
}

/// The subtree at `depth` of the (sorted, distinct) `leaves`.
fn build(depth: usize, leaves: &[(Hash, u64)]) -> Arc<Node> {
    match leaves {
        [] => Arc::new(Node::Empty),
        [(key, index)] => Arc::new(Node::Leaf {
            key: *key,
            index: *index,
            hash: leaf_hash(key, *index),
        }),
        _ => {
            // Distinct keys differ at a bit before the 256th.
            let split = leaves.partition_point(|(k, _)| !bit(k, depth));
            inner(
                build(depth + 1, &leaves[..split]),
                build(depth + 1, &leaves[split..]),
            )
        }
    }
}

fn inner(left: Arc<Node>, right: Arc<Node>) -> Arc<Node> {
    let hash = node_hash(&left.hash(), &right.hash());
    Arc::new(Node::Inner { left, right, hash })
}

/// What a map says of one key, with the path that proves it: the
/// siblings from the root down, and what the path ends at (a leaf, of
/// this key or of another that shares the path, or nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapProof {
    /// The sibling of each node on the path, from the root's children down.
    pub siblings: Vec<Hash>,
    /// The leaf the path ends at: its key and index; `None` for an empty
    /// subtree.
    pub leaf: Option<(Hash, u64)>,
}

/// Why a map proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapProofError {
    /// More siblings than a key has bits.
    #[error("the map proof has {0} siblings; a key has {MAX_DEPTH} bits")]
    TooLong(usize),
    /// The leaf's key does not share the path of the key asked for.
    #[error("the map proof ends at the leaf of key {leaf}, which is not on the path of key {key}")]
    OffPath {
        /// The key asked for.
        key: Hash,
        /// The leaf's key.
        leaf: Hash,
    },
    /// The path does not lead to the root.
    #[error("the map proof gives root {computed}, not the committed {root}")]
    Root {
        /// The root the proof gives.
        computed: Hash,
        /// The committed root.
        root: Hash,
    },
}

impl MapProof {
    /// Verifies the proof of `key` against `root`: the index of the newest
    /// event of `key`, or `None` when the map holds no event of it.
    ///
    /// # Errors
    /// [`MapProofError`]: a proof too long, a leaf off the key's path, a
    /// path that does not give `root`.
    pub fn verify(&self, key: &Hash, root: &Hash) -> Result<Option<u64>, MapProofError> {
        let depth = self.siblings.len();
        if depth > MAX_DEPTH {
            return Err(MapProofError::TooLong(depth));
        }
        let (mut h, found) = match &self.leaf {
            None => (EMPTY, None),
            Some((k, index)) => {
                if (0..depth).any(|i| bit(k, i) != bit(key, i)) {
                    return Err(MapProofError::OffPath {
                        key: *key,
                        leaf: *k,
                    });
                }
                (leaf_hash(k, *index), (k == key).then_some(*index))
            }
        };
        for (i, s) in self.siblings.iter().enumerate().rev() {
            h = if bit(key, i) {
                node_hash(s, &h)
            } else {
                node_hash(&h, s)
            };
        }
        if h != *root {
            return Err(MapProofError::Root {
                computed: h,
                root: *root,
            });
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
