//! Writes the seed corpus of the fuzz targets into `fuzz/corpus/<target>/`:
//! valid inputs of each parser plus a few near misses. Run from the
//! workspace root: `cargo run -p quire-core --example fuzz_seeds`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use quire_core::{leaf_hash, Checkpoint, CompactRange, Note};

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new("fuzz/corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), data).unwrap();
}

fn main() {
    let root = leaf_hash(b"seed");
    let cp = Checkpoint::with_extensions("example.com/log", 123, root, vec!["ext".into()]).unwrap();
    let text = cp.to_text();
    write("checkpoint", "valid", text.as_bytes());
    write(
        "checkpoint",
        "zero",
        Checkpoint::new("o", 0, root).unwrap().to_text().as_bytes(),
    );
    write(
        "checkpoint",
        "leading_zero",
        format!("o\n0123\n{}\n", root.to_base64()).as_bytes(),
    );
    write("checkpoint", "no_newline", text.trim_end().as_bytes());

    // Signed with the note target's fixed keys, so fuzzing reaches the
    // signature checks.
    let (logs, w) = quire_core::fuzz_targets::fixed_signers().unwrap();
    let (ed, ec) = (&logs[0], &logs[1]);
    let text = Checkpoint::new("fuzz.example/log", 77, root)
        .unwrap()
        .to_text();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(ed.sign(text.as_bytes())).unwrap();
    note.add_signature(ec.sign(text.as_bytes())).unwrap();
    note.add_signature(w.cosign(text.as_bytes(), 1_700_000_000).unwrap())
        .unwrap();
    write("note", "three_signatures", &note.to_bytes());
    write(
        "note",
        "text_with_blank_lines",
        b"a\n\nb\n\n\xe2\x80\x94 k AAAAAAA=\n",
    );
    write("note", "no_signatures", format!("{text}\n").as_bytes());

    write("key", "ed25519_vkey", ed.verifier().to_vkey().as_bytes());
    write("key", "p256_vkey", ec.verifier().to_vkey().as_bytes());
    write("key", "witness_vkey", w.verifier().to_vkey().as_bytes());
    write("key", "ed25519_private", ed.to_private_text().as_bytes());
    write("key", "p256_private", ec.to_private_text().as_bytes());
    write("key", "witness_private", w.to_private_text().as_bytes());

    // Proof inputs: index/size (or old/new), selector, leaf/old root, root, path.
    let mut tree = CompactRange::new();
    let mut nodes = std::collections::HashMap::new();
    let mut roots = vec![tree.root()];
    for i in 0..13u64 {
        tree.append(leaf_hash(&i.to_be_bytes()), |n, h| {
            nodes.insert(n, *h);
        })
        .unwrap();
        roots.push(tree.root());
    }
    let proof = quire_core::prove_inclusion(&nodes, 5, 13).unwrap();
    let mut data = Vec::new();
    data.extend(5u64.to_be_bytes());
    data.extend(13u64.to_be_bytes());
    data.push(0);
    data.extend(leaf_hash(&5u64.to_be_bytes()).0);
    data.extend(roots[13].0);
    for h in &proof {
        data.extend(h.0);
    }
    write("proof", "inclusion_5_of_13", &data);
    let proof = quire_core::prove_consistency(&nodes, 6, 13).unwrap();
    let mut data = Vec::new();
    data.extend(6u64.to_be_bytes());
    data.extend(13u64.to_be_bytes());
    data.push(1);
    data.extend(roots[6].0);
    data.extend(roots[13].0);
    for h in &proof {
        data.extend(h.0);
    }
    write("proof", "consistency_6_to_13", &data);

    // A tlog-proof of entry 5 of the 13 above, signed by the fixed keys.
    let text = Checkpoint::new("fuzz.example/log", 13, roots[13])
        .unwrap()
        .to_text();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(ed.sign(text.as_bytes())).unwrap();
    note.add_signature(w.cosign(text.as_bytes(), 1_700_000_000).unwrap())
        .unwrap();
    let p = quire_core::tlog_proof::TlogProof {
        extra: Some(5u64.to_be_bytes().to_vec()),
        index: 5,
        proof: quire_core::prove_inclusion(&nodes, 5, 13).unwrap(),
        checkpoint: note,
    };
    write("tlog_proof", "entry_5_of_13", &p.to_bytes());
    let bare = quire_core::tlog_proof::TlogProof { extra: None, ..p };
    write("tlog_proof", "no_extra", &bare.to_bytes());
}
