//! The check after a fault: every acknowledged entry at its index byte
//! for byte, one root per size over everything stored, served or
//! witnessed, each stored checkpoint consistent with the next, and no
//! witness holding evidence.

use std::collections::BTreeMap;

use quire_core::{Checkpoint, Note, VerifierKey};
use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::ListEvidenceRequest;
use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::{Storage, StorageReader};
use tonic::transport::Channel;

use super::{lock, size_of, Replicas};

impl Replicas {
    /// The log's verifier key (from the first replica's key files).
    pub fn vkey(&self) -> VerifierKey {
        let keys = self
            .dir
            .join(self.first.expect("a replica started"))
            .join("data/keys");
        let text = std::fs::read_dir(keys)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(".p256.vkey"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .unwrap();
        VerifierKey::parse(text.trim()).unwrap()
    }

    /// The check after a fault (see the module's documentation).
    pub async fn verify(&mut self) {
        self.wait_caught_up().await;
        let key = self.vkey();
        let store =
            PgStore::open(&PgOptions::new(self.url.clone()), &self.origin, Create::No).unwrap();
        let r = store.reader().unwrap();
        let acked = lock(&self.acks).acked.clone();
        let mut indexes: Vec<u64> = acked.iter().map(|(i, _)| *i).collect();
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(indexes.len(), acked.len(), "no index acknowledged twice");
        for (index, entry) in &acked {
            assert_eq!(
                &r.entries(*index, index + 1).unwrap()[0],
                entry,
                "entry {index}"
            );
        }
        let mut roots = BTreeMap::new();
        let mut stored = BTreeMap::new();
        for c in r.checkpoints(0, 1_000_000).unwrap() {
            let note = Note::parse(&c.note).unwrap();
            note.verify(std::slice::from_ref(&key)).unwrap();
            let cp = Checkpoint::parse(note.text().as_bytes()).unwrap();
            assert!(
                roots.insert(cp.size(), *cp.root()).is_none(),
                "size {} twice",
                cp.size()
            );
            stored.insert(c.size, c.note.clone());
        }
        let sizes: Vec<_> = roots.iter().map(|(s, h)| (*s, *h)).collect();
        for w in sizes.windows(2) {
            let ((a, ra), (b, rb)) = (w[0], w[1]);
            if a > 0 {
                let proof = quire_core::prove_consistency(&r, a, b).unwrap();
                quire_core::verify_consistency(a, b, &proof, &ra, &rb).unwrap();
            }
        }
        for note in &self.served {
            let size = size_of(note);
            assert_eq!(
                stored.get(&size),
                Some(note),
                "a served checkpoint of size {size} is the stored one"
            );
        }
        for w in &self.witnesses {
            let mut wc = WitnessClient::new(Channel::from_shared(w.url()).unwrap().connect_lazy());
            let evidence = wc
                .list_evidence(ListEvidenceRequest {
                    origin: self.origin.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .evidence;
            assert!(evidence.is_empty(), "witness {} holds evidence", w.url());
            let latest = self.witnessed(&mut wc).await;
            let cp = Checkpoint::parse(Note::parse(&latest).unwrap().text().as_bytes()).unwrap();
            assert_eq!(roots.get(&cp.size()), Some(cp.root()), "witnessed root");
        }
    }
}
