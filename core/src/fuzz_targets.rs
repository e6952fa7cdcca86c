//! Bodies of the fuzz targets in `fuzz/`, kept here so that the ordinary test
//! suite runs them over the saved corpus too. Each takes arbitrary bytes,
//! must not panic, and asserts the round-trip properties of its parser.

use crate::checkpoint::Checkpoint;
use crate::hash::{Hash, HASH_LEN};
use crate::keys::{LogSigner, VerifierKey, WitnessSigner};
use crate::note::Note;
use crate::tlog_proof::TlogProof;
use crate::verify::{verify_consistency, verify_inclusion};

/// Checkpoint parsing: what parses formats back to the same bytes.
///
/// # Panics
/// When the round trip fails: a parser bug for the fuzzer to report.
pub fn checkpoint(data: &[u8]) {
    if let Ok(cp) = Checkpoint::parse(data) {
        assert_eq!(cp.to_text().as_bytes(), data, "checkpoint round trip");
    }
}

/// Note parsing and verification against fixed keys.
///
/// # Panics
/// When the round trip fails: a parser bug for the fuzzer to report.
pub fn note(data: &[u8]) {
    if let Ok(n) = Note::parse(data) {
        let again = Note::parse(&n.to_bytes());
        assert_eq!(again.as_ref(), Ok(&n), "note round trip");
        // Must not panic; any result is fine for random bytes.
        let _ = n.verify(fixed_verifiers());
    }
}

/// Key parsing: verifier keys and private keys of both kinds.
///
/// # Panics
/// When a round trip fails: a parser bug for the fuzzer to report.
pub fn key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = VerifierKey::parse(text) {
        assert_eq!(
            VerifierKey::parse(&k.to_vkey()),
            Ok(k.clone()),
            "vkey round trip"
        );
    }
    if let Ok(k) = LogSigner::from_private_text(text) {
        assert_eq!(
            LogSigner::from_private_text(&k.to_private_text()).map(|s| s.verifier()),
            Ok(k.verifier())
        );
    }
    if let Ok(k) = WitnessSigner::from_private_text(text) {
        assert_eq!(
            WitnessSigner::from_private_text(&k.to_private_text()).map(|s| s.verifier()),
            Ok(k.verifier())
        );
    }
}

/// Proof verification over arbitrary sizes, indexes and hashes.
/// Layout: 8-byte index/old size, 8-byte size/new size, 1 selector byte, then
/// 32-byte hashes (leaf or old root, root, proof...).
pub fn proof(data: &[u8]) {
    if data.len() < 17 + 2 * HASH_LEN {
        return;
    }
    let a = u64::from_be_bytes(data[..8].try_into().unwrap_or_default());
    let b = u64::from_be_bytes(data[8..16].try_into().unwrap_or_default());
    let hashes: Vec<Hash> = data[17..]
        .chunks_exact(HASH_LEN)
        .filter_map(|c| Hash::from_slice(c).ok())
        .collect();
    let (x, y, path) = (&hashes[0], &hashes[1], &hashes[2..]);
    if data[16] & 1 == 0 {
        let _ = verify_inclusion(x, a, b, path, y);
    } else {
        let _ = verify_consistency(a, b, path, x, y);
    }
}

/// The fixed keys the note target verifies with: an Ed25519 and a P-256 log
/// key named `fuzz.example/log` and a witness `fuzz.example/witness`. The
/// seed corpus is signed with them so that fuzzing reaches signature checks.
/// Deterministic, so never use them for anything real.
///
/// # Errors
/// Never in practice: the names are valid.
pub fn fixed_signers() -> Result<(Vec<LogSigner>, WitnessSigner), crate::keys::KeyError> {
    let mut rng = FixedRng(7);
    let logs = [
        crate::keys::LogKeyAlgorithm::Ed25519,
        crate::keys::LogKeyAlgorithm::EcdsaP256,
    ]
    .into_iter()
    .map(|alg| LogSigner::generate_with(alg, "fuzz.example/log", &mut rng))
    .collect::<Result<Vec<_>, _>>()?;
    let witness = WitnessSigner::generate_with("fuzz.example/witness", &mut rng)?;
    Ok((logs, witness))
}

/// The verifier keys of [`fixed_signers`], made once per process.
fn fixed_verifiers() -> &'static [VerifierKey] {
    static KEYS: std::sync::OnceLock<Vec<VerifierKey>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| match fixed_signers() {
        Ok((logs, witness)) => logs
            .iter()
            .map(LogSigner::verifier)
            .chain([witness.verifier()])
            .collect(),
        Err(_) => Vec::new(),
    })
}

/// A deterministic generator: fine for fuzzing keys, never for real ones.
struct FixedRng(u64);

impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64().to_le_bytes()[0..4]
            .iter()
            .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
    }
    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for FixedRng {}

/// `tlog-proof` parsing and verification against the fixed keys: what parses
/// formats back to the same bytes, and verifying never panics.
///
/// # Panics
/// When the round trip fails: a parser bug for the fuzzer to report.
pub fn tlog_proof(data: &[u8]) {
    if let Ok(p) = TlogProof::parse(data) {
        let again = TlogProof::parse(&p.to_bytes());
        assert_eq!(again.as_ref(), Ok(&p), "tlog-proof round trip");
        let keys = fixed_verifiers();
        let _ = p.verify(None, "fuzz.example/log", keys, keys);
    }
}

/// Event envelope decoding: what decodes encodes back to the same bytes.
///
/// # Panics
/// When the round trip fails: a parser bug for the fuzzer to report.
pub fn event_envelope(data: &[u8]) {
    if let Ok(env) = crate::event::Envelope::decode(data) {
        assert_eq!(env.encode().as_deref(), Ok(data), "envelope round trip");
    }
}

/// A key map proof (`docs/EVENTS.md` §11) read from `data` (the key, the
/// root, a leaf flag, the leaf's key and index, then siblings of 32
/// bytes): verifying never panics, and a proof that verifies names the
/// key's leaf or none.
///
/// # Panics
/// When a verified proof names a leaf of another key as found.
pub fn map_proof(data: &[u8]) {
    let hash = |b: &[u8]| {
        let mut h = [0u8; 32];
        h.copy_from_slice(b);
        crate::Hash(h)
    };
    if data.len() < 105 {
        return;
    }
    let (key, root) = (hash(&data[..32]), hash(&data[32..64]));
    let leaf = (data[64] & 1 == 1).then(|| {
        let mut i = [0u8; 8];
        i.copy_from_slice(&data[97..105]);
        (hash(&data[65..97]), u64::from_be_bytes(i))
    });
    let siblings = data[105..].chunks_exact(32).map(hash).collect();
    let proof = crate::map::MapProof { siblings, leaf };
    if let Ok(Some(i)) = proof.verify(&key, &root) {
        assert_eq!(
            proof.leaf,
            Some((key, i)),
            "a proof found another key's leaf"
        );
    }
}
