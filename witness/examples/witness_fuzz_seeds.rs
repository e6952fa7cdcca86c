//! Writes seed inputs for the `witness_request` fuzz target into
//! `fuzz/corpus/witness_request/`: valid add-checkpoint bodies from the seed
//! log (the stored size 3 and beyond), with and without proofs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::HashMap;

use quire_core::{leaf_hash, prove_consistency, Checkpoint, CompactRange, Note};
use quire_witness::fuzz_target::stored;

fn main() {
    let (signer, _) = stored().expect("seed key");
    let mut nodes = HashMap::new();
    let mut range = CompactRange::new();
    let mut roots = vec![range.root()];
    for i in 0..20u32 {
        range
            .append(leaf_hash(i.to_string().as_bytes()), |id, h| {
                nodes.insert(id, *h);
            })
            .unwrap();
        roots.push(range.root());
    }
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/witness_request");
    std::fs::create_dir_all(&dir).unwrap();
    for (old, new) in [
        (3u64, 3u64),
        (3, 4),
        (3, 8),
        (3, 17),
        (0, 5),
        (5, 3),
        (3, 20),
    ] {
        let text = Checkpoint::new("PeterNeumann", new, roots[new as usize])
            .unwrap()
            .to_text();
        let mut note = Note::new(&text).unwrap();
        note.add_signature(signer.sign(text.as_bytes())).unwrap();
        let mut body = format!("old {old}\n").into_bytes();
        if old > 0 && old < new {
            for h in prove_consistency(&nodes, old, new).unwrap() {
                body.extend_from_slice(format!("{}\n", h.to_base64()).as_bytes());
            }
        }
        body.push(b'\n');
        body.extend_from_slice(&note.to_bytes());
        std::fs::write(dir.join(format!("seed-{old}-{new}")), body).unwrap();
    }
}
