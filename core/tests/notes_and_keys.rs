//! Signed notes, keys and cosignatures: known answers from other
//! implementations, and cross-checks with the `signed_note` crate (which
//! parses and verifies notes independently of quire-core).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_core::keys::{key_id, KeyType};
use quire_core::{
    Checkpoint, KeyError, LogKeyAlgorithm, LogSigner, Note, NoteError, NoteVerifyError,
    VerifierKey, WitnessSigner,
};
use rand::SeedableRng;

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

// --- Known answers ---------------------------------------------------------

/// Go's `sumdb/note` test key (type 0x01).
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
/// Sigstore Rekor's public log key (type 0x02); its key ID is the first four
/// bytes of Rekor's published log ID c0d23d6a…, the SHA-256 of its SPKI.
const REKOR_VKEY: &str = "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=";
/// A public witness's cosignature/v1 key (type 0x04).
const WITNESS_VKEY: &str = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";

#[test]
fn known_key_ids() {
    let go = VerifierKey::parse(GO_VKEY).unwrap();
    assert_eq!(
        (go.key_id(), go.key_type()),
        (0xc74f_20a3, KeyType::Ed25519)
    );
    assert_eq!(go.to_vkey(), GO_VKEY);
    let signer = LogSigner::from_private_text(GO_SKEY).unwrap();
    assert_eq!(signer.verifier(), go);
    assert_eq!(&*signer.to_private_text(), GO_SKEY);

    let rekor = VerifierKey::parse(REKOR_VKEY).unwrap();
    assert_eq!(
        (rekor.key_id(), rekor.key_type()),
        (0xc0d2_3d6a, KeyType::EcdsaP256)
    );
    assert_eq!(rekor.to_vkey(), REKOR_VKEY);

    let w = VerifierKey::parse(WITNESS_VKEY).unwrap();
    assert_eq!(
        (w.key_id(), w.key_type()),
        (0xda77_ade7, KeyType::CosignatureV1)
    );
    assert_eq!(w.to_vkey(), WITNESS_VKEY);
}

#[test]
fn key_ids_follow_the_rules() {
    use sha2::{Digest, Sha256};
    let pk = [7u8; 32];
    let mut h = Sha256::new();
    h.update(b"n\n\x01");
    h.update(pk);
    let want = u32::from_be_bytes(h.finalize()[..4].try_into().unwrap());
    assert_eq!(key_id("n", KeyType::Ed25519, &pk), want);
    let mut h = Sha256::new();
    h.update(b"n\n\x04");
    h.update(pk);
    let want = u32::from_be_bytes(h.finalize()[..4].try_into().unwrap());
    assert_eq!(key_id("n", KeyType::CosignatureV1, &pk), want);
    let want = u32::from_be_bytes(Sha256::digest(b"spki")[..4].try_into().unwrap());
    assert_eq!(key_id("any name", KeyType::EcdsaP256, b"spki"), want);
}

#[test]
fn bad_key_texts_are_refused_with_reasons() {
    let long = "a".repeat(2000);
    let wrong_id = GO_VKEY.replace("c74f20a3", "c74f20a4");
    let cases: Vec<(&str, KeyError)> = vec![
        (&long, KeyError::TooLong { len: 2000 }),
        (
            "name+c74f20a3",
            KeyError::Format("<name>+<8 hex digit key ID>+<base64 key>"),
        ),
        ("na me+c74f20a3+AQ==", KeyError::BadName("na me".into())),
        (
            "name+c74f20a+AQ==",
            KeyError::Format("<name>+<8 hex digit key ID>+<base64 key>"),
        ),
        ("name+c74f20a3+!!!", KeyError::Base64),
        ("name+c74f20a3+BwE=", KeyError::UnknownType(7)),
        ("name+c74f20a3+AQE=", KeyError::BadKey(KeyType::Ed25519)),
        (
            &wrong_id,
            KeyError::WrongKeyId {
                given: 0xc74f_20a4,
                computed: 0xc74f_20a3,
            },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(VerifierKey::parse(text), Err(want), "{text}");
    }
    assert!(matches!(
        WitnessSigner::from_private_text(GO_SKEY),
        Err(KeyError::WrongType {
            got: KeyType::Ed25519,
            ..
        })
    ));
    let w = WitnessSigner::generate_with("w.example", &mut rng(1)).unwrap();
    assert!(matches!(
        LogSigner::from_private_text(&w.to_private_text()),
        Err(KeyError::WrongType {
            got: KeyType::CosignatureV1,
            ..
        })
    ));
    assert!(LogSigner::from_private_text(GO_VKEY).is_err());
}

// --- Signed checkpoints of every key type -----------------------------------

fn checkpoint_text() -> String {
    Checkpoint::new(
        "audit.example.com/prod/2026",
        42,
        quire_core::leaf_hash(b"root"),
    )
    .unwrap()
    .to_text()
}

fn all_log_signers() -> Vec<LogSigner> {
    vec![
        LogSigner::generate_with(
            LogKeyAlgorithm::Ed25519,
            "audit.example.com/prod/2026",
            &mut rng(2),
        )
        .unwrap(),
        LogSigner::generate_with(
            LogKeyAlgorithm::EcdsaP256,
            "audit.example.com/prod/2026",
            &mut rng(3),
        )
        .unwrap(),
    ]
}

#[test]
fn signed_checkpoint_for_each_key_type_verifies_and_round_trips() {
    let text = checkpoint_text();
    let witness = WitnessSigner::generate_with("witness.example/w1", &mut rng(4)).unwrap();
    let mut note = Note::new(&text).unwrap();
    for s in all_log_signers() {
        note.add_signature(s.sign(text.as_bytes())).unwrap();
    }
    note.add_signature(witness.cosign(text.as_bytes(), 1_700_000_000).unwrap())
        .unwrap();
    let bytes = note.to_bytes();
    let parsed = Note::parse(&bytes).unwrap();
    assert_eq!(parsed, note);
    assert_eq!(
        Checkpoint::parse(parsed.text().as_bytes()).unwrap().size(),
        42
    );

    for s in all_log_signers() {
        // Keys also survive their text forms.
        let again = LogSigner::from_private_text(&s.to_private_text()).unwrap();
        let v = VerifierKey::parse(&again.verifier().to_vkey()).unwrap();
        let got = parsed.verify(std::slice::from_ref(&v)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].key.clone(), got[0].timestamp), (v, None));
    }
    let got = parsed.verify(&[witness.verifier()]).unwrap();
    assert_eq!(got[0].timestamp, Some(1_700_000_000));

    // Tampering with the text breaks every signature.
    let tampered = String::from_utf8(bytes)
        .unwrap()
        .replace("\n42\n", "\n43\n");
    let tampered = Note::parse(tampered.as_bytes()).unwrap();
    for v in all_log_signers()
        .iter()
        .map(LogSigner::verifier)
        .chain([witness.verifier()])
    {
        assert!(matches!(
            tampered.verify(&[v]),
            Err(NoteVerifyError::BadSignature { .. })
        ));
    }
}

#[test]
fn unknown_signers_are_ignored_and_at_least_sixteen_accepted() {
    let text = checkpoint_text();
    let mut note = Note::new(&text).unwrap();
    // 20 unknown keys, one of them sharing the log's name, then the log.
    for i in 0..20 {
        let name = if i == 0 {
            "audit.example.com/prod/2026".to_string()
        } else {
            format!("other{i}")
        };
        let k =
            LogSigner::generate_with(LogKeyAlgorithm::Ed25519, &name, &mut rng(100 + i)).unwrap();
        note.add_signature(k.sign(text.as_bytes())).unwrap();
    }
    let log = &all_log_signers()[0];
    note.add_signature(log.sign(text.as_bytes())).unwrap();
    let parsed = Note::parse(&note.to_bytes()).unwrap();
    assert_eq!(parsed.signatures().len(), 21);
    assert_eq!(parsed.verify(&[log.verifier()]).unwrap().len(), 1);
    // None known: the error lists who signed.
    let stranger = WitnessSigner::generate_with("x", &mut rng(9))
        .unwrap()
        .verifier();
    match Note::parse(&note.to_bytes()).unwrap().verify(&[stranger]) {
        Err(NoteVerifyError::NoKnownSignature { signers }) => assert!(signers.contains("other3")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_notes_are_refused() {
    let text = checkpoint_text();
    let sig = all_log_signers()[0].sign(text.as_bytes()).to_line();
    let too_many: String = std::iter::repeat_n(sig.as_str(), 65).collect();
    let cases: Vec<(Vec<u8>, NoteError)> = vec![
        (vec![b'a'; 70_000], NoteError::TooLarge { len: 70_000 }),
        (
            format!("{text}{sig}").into_bytes(),
            NoteError::NoSignatureBlock,
        ),
        (format!("{text}\n").into_bytes(), NoteError::NoSignatures),
        (
            format!("{text}\n{too_many}").into_bytes(),
            NoteError::TooManySignatures { count: 65 },
        ),
        (
            format!("{text}\n— name AAAA\n").into_bytes(),
            NoteError::BadSignatureLine("— name AAAA".into()),
        ),
        (
            format!("{text}\n- name AAAAAAA=\n").into_bytes(),
            NoteError::BadSignatureLine("- name AAAAAAA=".into()),
        ),
        (format!("a\u{7}\n\n{sig}").into_bytes(), NoteError::NotText),
        (vec![0xff, b'\n', b'\n'], NoteError::NotText),
    ];
    for (bytes, want) in cases {
        assert_eq!(Note::parse(&bytes), Err(want));
    }
}

// --- Cross-checks with the signed_note crate --------------------------------

/// A signed_note verifier for ECDSA (type 0x02) written with p256 directly.
struct P256Verifier {
    name: String,
    id: u32,
    key: p256::ecdsa::VerifyingKey,
}

impl signed_note::Verifier for P256Verifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use sha2::Digest;
        let Ok(sig) = p256::ecdsa::Signature::from_der(sig) else {
            return false;
        };
        self.key
            .verify_prehash(&sha2::Sha256::digest(msg), &sig)
            .is_ok()
    }
}

/// A signed_note verifier for cosignature/v1 written from the C2SP text with
/// ed25519-dalek directly.
struct CosigVerifier {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl signed_note::Verifier for CosigVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 72 {
            return false;
        }
        let ts = u64::from_be_bytes(sig[..8].try_into().unwrap());
        let mut m = format!("cosignature/v1\ntime {ts}\n").into_bytes();
        m.extend_from_slice(msg);
        let s = ed25519_dalek::Signature::from_slice(&sig[8..]).unwrap();
        self.key.verify_strict(&m, &s).is_ok()
    }
}

#[test]
fn our_notes_verify_with_signed_note() {
    let text = checkpoint_text();
    let [ed, ec] = <[LogSigner; 2]>::try_from(all_log_signers()).unwrap();
    let witness = WitnessSigner::generate_with("witness.example/w1", &mut rng(5)).unwrap();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(ed.sign(text.as_bytes())).unwrap();
    note.add_signature(ec.sign(text.as_bytes())).unwrap();
    note.add_signature(witness.cosign(text.as_bytes(), 1_727_964_367).unwrap())
        .unwrap();
    let bytes = note.to_bytes();

    let theirs = signed_note::Note::from_bytes(&bytes).unwrap();
    assert_eq!(theirs.text(), text.as_bytes());
    assert_eq!(theirs.to_bytes(), bytes);

    // Ed25519 through signed_note's own verifier, parsed from our vkey.
    let ed_v = signed_note::StandardVerifier::new(&ed.verifier().to_vkey()).unwrap();
    let (ok, _) = theirs
        .verify(&signed_note::VerifierList::new(vec![Box::new(ed_v)]))
        .unwrap();
    assert_eq!(ok.len(), 1);

    // ECDSA: key from our vkey's SPKI, checked by p256 over SHA-256(text).
    let vkey = ec.verifier().to_vkey();
    let b64 = vkey.rsplit('+').next().unwrap();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(raw[0], 0x02);
    use p256::pkcs8::DecodePublicKey;
    let ec_v = P256Verifier {
        name: ec.name().into(),
        id: ec.key_id(),
        key: p256::ecdsa::VerifyingKey::from_public_key_der(&raw[1..]).unwrap(),
    };
    let (ok, _) = theirs
        .verify(&signed_note::VerifierList::new(vec![Box::new(ec_v)]))
        .unwrap();
    assert_eq!(ok.len(), 1);

    // Cosignature, from the spec's message format.
    let vkey = witness.verifier().to_vkey();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(vkey.rsplit('+').next().unwrap())
        .unwrap();
    assert_eq!(raw[0], 0x04);
    let cv = CosigVerifier {
        name: witness.name().into(),
        id: witness.key_id(),
        key: ed25519_dalek::VerifyingKey::from_bytes(&raw[1..].try_into().unwrap()).unwrap(),
    };
    let (ok, _) = theirs
        .verify(&signed_note::VerifierList::new(vec![Box::new(cv)]))
        .unwrap();
    assert_eq!(ok.len(), 1);
}

#[test]
fn signed_note_notes_and_keys_work_with_ours() {
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "peer.example/log");
    // Their private and public key texts parse here, to the same key.
    let ours = LogSigner::from_private_text(&skey).unwrap();
    assert_eq!(ours.verifier().to_vkey(), vkey);
    let v = VerifierKey::parse(&vkey).unwrap();

    let signer = signed_note::StandardSigner::new(&skey).unwrap();
    let text = checkpoint_text();
    let mut theirs = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
    theirs.add_sigs(&[&signer]).unwrap();
    let bytes = theirs.to_bytes();
    let note = Note::parse(&bytes).unwrap();
    assert_eq!(note.to_bytes(), bytes);
    assert_eq!(note.verify(&[v]).unwrap().len(), 1);
    // Ed25519 is deterministic: both libraries make the same signature.
    assert_eq!(
        ours.sign(text.as_bytes()).to_line().into_bytes(),
        bytes[text.len() + 1..]
    );
}

#[test]
fn cosignature_timestamps_are_bounded() {
    let w = WitnessSigner::generate_with("w", &mut rng(6)).unwrap();
    assert!(w.cosign(b"o\n1\nAA==\n", 1 << 63).is_err());
    assert!(w.cosign(b"o\n1\nAA==\n", (1 << 63) - 1).is_ok());
}

/// P-256 signatures are verified with `ring`; the keys and signatures come
/// from the `p256` crate, which must agree on every verdict: valid, altered,
/// and the high-S twin of each valid signature (which ECDSA accepts).
#[test]
fn p256_verdicts_agree_with_the_p256_crate() {
    use base64::Engine as _;
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    use p256::pkcs8::EncodePublicKey as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut r = rng(256);
    for i in 0..24u64 {
        let sk = p256::ecdsa::SigningKey::random(&mut r);
        let vk = *sk.verifying_key();
        let spki = vk.to_public_key_der().unwrap().as_bytes().to_vec();
        let name = format!("p256-{i}.example");
        let id = key_id(&name, KeyType::EcdsaP256, &spki);
        let mut vkey_bytes = vec![0x02];
        vkey_bytes.extend_from_slice(&spki);
        let ours =
            VerifierKey::parse(&format!("{name}+{id:08x}+{}", b64.encode(&vkey_bytes))).unwrap();
        let text = format!("{name}\n{i}\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n");
        let sig: p256::ecdsa::Signature = sk.sign(text.as_bytes());
        let (rr, ss) = sig.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(*rr, -*ss).unwrap();
        let mut candidates = vec![
            sig.to_der().as_bytes().to_vec(),
            high.to_der().as_bytes().to_vec(),
        ];
        let mut flipped = candidates[0].clone();
        let at = 8 + (i as usize % (flipped.len() - 8));
        flipped[at] ^= 1 << (i % 8);
        candidates.push(flipped);
        for der in candidates {
            let theirs = p256::ecdsa::Signature::from_der(&der)
                .is_ok_and(|s| vk.verify(text.as_bytes(), &s).is_ok());
            let mut payload = id.to_be_bytes().to_vec();
            payload.extend_from_slice(&der);
            let note = format!("{text}\n— {name} {}\n", b64.encode(&payload));
            let verdict = Note::parse(note.as_bytes())
                .ok()
                .is_some_and(|n| n.verify(std::slice::from_ref(&ours)).is_ok());
            assert_eq!(verdict, theirs, "key {i}, signature {}", b64.encode(&der));
        }
    }
}

/// A log's P-256 signatures (made with `ring`) verify with the `p256`
/// crate, for keys made every way a log gets one: drawn, read from their
/// private text, and derived from secret bytes; and each signature is a
/// fresh one (ECDSA's nonce is random) that still verifies.
#[test]
fn p256_log_signatures_verify_with_the_p256_crate() {
    use p256::ecdsa::signature::Verifier as _;
    let mut r = rng(2560);
    for i in 0..16u8 {
        let name = format!("p256-signer-{i}.example");
        let drawn = LogSigner::generate_with(LogKeyAlgorithm::EcdsaP256, &name, &mut r).unwrap();
        let read = LogSigner::from_private_text(&drawn.to_private_text()).unwrap();
        let derived =
            LogSigner::from_secret_bytes(LogKeyAlgorithm::EcdsaP256, &name, &[i + 1; 32]).unwrap();
        for signer in [drawn, read, derived] {
            let vkey = signer.verifier().to_vkey();
            let spki = {
                use base64::Engine as _;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(vkey.splitn(3, '+').nth(2).unwrap())
                    .unwrap();
                raw[1..].to_vec()
            };
            use p256::pkcs8::DecodePublicKey as _;
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
            let text = format!("{name}\n{i}\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n");
            let one = signer.sign(text.as_bytes());
            let two = signer.sign(text.as_bytes());
            for sig in [&one, &two] {
                let line = sig.to_line();
                let mut note = Note::new(&text).unwrap();
                note.add_signature(sig.clone()).unwrap();
                let bytes = note.to_bytes();
                let parsed = Note::parse(&bytes).unwrap();
                assert_eq!(
                    parsed.verify(&[signer.verifier()]).unwrap().len(),
                    1,
                    "{line}"
                );
                let der = parsed.signatures()[0].signature();
                let s = p256::ecdsa::Signature::from_der(der).unwrap();
                assert!(vk.verify(text.as_bytes(), &s).is_ok(), "{line}");
                let mut wrong = text.clone().into_bytes();
                wrong[0] ^= 1;
                assert!(vk.verify(&wrong, &s).is_err(), "{line}");
            }
            assert_ne!(one.to_line(), two.to_line(), "a nonce used twice");
        }
    }
}
