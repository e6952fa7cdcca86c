//! Commits built the way the sequencer builds them, for tests of the
//! storage engines: every entry, node and leaf-index pair of a batch, on a
//! tree the writer keeps.

use std::collections::HashMap;

use quire_core::{leaf_hash, CompactRange, Hash, NodeId};
use quire_server::store::{Commit, Head, StoredCheckpoint};

/// Builds commits the way the sequencer does, and remembers every node for
/// comparison.
pub struct Writer {
    /// The tree so far.
    pub range: CompactRange,
    /// Every node's hash so far.
    pub nodes: HashMap<NodeId, Hash>,
    /// Every entry so far.
    pub entries: Vec<Vec<u8>>,
}

impl Writer {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Writer {
            range: CompactRange::new(),
            nodes: HashMap::new(),
            entries: Vec::new(),
        }
    }

    /// The tree's size and root.
    #[must_use]
    pub fn head(&self) -> Head {
        Head {
            size: self.range.size(),
            root: self.range.root(),
        }
    }

    /// A commit of `entries` and the writer after it (this one is left
    /// as it was, for commits that are to be refused).
    ///
    /// # Panics
    /// At the tree's maximum size.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn commit(&self, entries: &[Vec<u8>], checkpoint: bool) -> (Commit, Writer) {
        let mut next = Writer {
            range: self.range.clone(),
            nodes: self.nodes.clone(),
            entries: self.entries.clone(),
        };
        let mut c = Commit {
            base: self.head(),
            ..Commit::default()
        };
        for e in entries {
            let leaf = leaf_hash(e);
            let index = next.range.size();
            let nodes = &mut next.nodes;
            next.range
                .append(leaf, |n, h| {
                    c.nodes.push((n, *h));
                    nodes.insert(n, *h);
                })
                .expect("a tree below its maximum size");
            c.leaf_index.push((leaf, index));
            c.entries.push(e.clone());
            next.entries.push(e.clone());
        }
        c.head = next.head();
        if checkpoint {
            c.checkpoint = Some(StoredCheckpoint {
                size: next.range.size(),
                signed_at_ms: next.range.size() * 10,
                note: format!("note of size {}", next.range.size()).into_bytes(),
            });
        }
        (c, next)
    }
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

/// `n` distinct entries of varied lengths, numbered from `from`.
#[must_use]
pub fn entries(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("entry {i} {}", "x".repeat(i % 7)).into_bytes())
        .collect()
}
