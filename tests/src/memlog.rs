//! A log held in memory and signed with a test key: checkpoints at any
//! size and consistency proofs between any sizes, to drive witnesses
//! without a server (and, with two of them sharing a key, to play a log
//! that shows two histories).

use std::collections::HashMap;

use quire_core::{
    leaf_hash, prove_consistency, root_at, Checkpoint, CompactRange, Hash, LogKeyAlgorithm,
    LogSigner, NodeId, Note,
};

/// An in-memory log.
pub struct MemLog {
    origin: String,
    signer: LogSigner,
    nodes: HashMap<NodeId, Hash>,
    range: CompactRange,
    roots: Vec<Hash>,
}

impl MemLog {
    /// An empty log with a new Ed25519 key.
    ///
    /// # Panics
    /// For an origin that is not a valid key name.
    #[allow(clippy::expect_used)]
    pub fn new(origin: &str) -> Self {
        let signer = LogSigner::generate(LogKeyAlgorithm::Ed25519, origin).expect("key");
        Self::with_signer(origin, signer)
    }

    /// An empty log signing with `signer` (two logs with one signer show
    /// two histories under one key: a split view).
    pub fn with_signer(origin: &str, signer: LogSigner) -> Self {
        let range = CompactRange::new();
        let roots = vec![range.root()];
        MemLog {
            origin: origin.to_owned(),
            signer,
            nodes: HashMap::new(),
            range,
            roots,
        }
    }

    /// The signer.
    pub fn signer(&self) -> &LogSigner {
        &self.signer
    }

    /// The log's verifier key text.
    pub fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }

    /// Appends `n` entries named after `tag`.
    ///
    /// # Panics
    /// Past the largest tree.
    #[allow(clippy::expect_used)]
    pub fn append(&mut self, n: u64, tag: &str) {
        for _ in 0..n {
            let i = self.range.size();
            let leaf = leaf_hash(format!("{tag} entry {i}").as_bytes());
            let nodes = &mut self.nodes;
            self.range
                .append(leaf, |id, h| {
                    nodes.insert(id, *h);
                })
                .expect("append");
            self.roots.push(self.range.root());
        }
    }

    /// Entries so far.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The root at `size`.
    ///
    /// # Panics
    /// Past the log's size.
    pub fn root(&self, size: u64) -> Hash {
        self.roots[usize::try_from(size).unwrap_or(usize::MAX)]
    }

    /// The checkpoint text at `size`.
    ///
    /// # Panics
    /// Past the log's size.
    #[allow(clippy::expect_used)]
    pub fn text(&self, size: u64) -> String {
        Checkpoint::new(&self.origin, size, self.root(size))
            .expect("checkpoint")
            .to_text()
    }

    /// The signed checkpoint note at `size`.
    ///
    /// # Panics
    /// Past the log's size.
    #[allow(clippy::expect_used)]
    pub fn checkpoint(&self, size: u64) -> Vec<u8> {
        let text = self.text(size);
        let mut note = Note::new(&text).expect("note");
        note.add_signature(self.signer.sign(text.as_bytes()))
            .expect("signature");
        note.to_bytes()
    }

    /// The RFC 9162 consistency proof from `old` to `new`.
    ///
    /// # Panics
    /// For impossible sizes.
    #[allow(clippy::expect_used)]
    pub fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 || old == new {
            return Vec::new();
        }
        prove_consistency(&self.nodes, old, new).expect("proof")
    }

    /// The root of the largest complete subtree ending at `old` (the seed
    /// of a consistency path).
    ///
    /// # Panics
    /// For impossible sizes.
    #[allow(clippy::expect_used)]
    pub fn seed(&self, old: u64, new: u64) -> Hash {
        if old.is_power_of_two() {
            root_at(&self.nodes, old).expect("root")
        } else {
            self.proof(old, new)[0]
        }
    }
}
