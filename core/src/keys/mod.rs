//! Keys for C2SP signed notes.
//!
//! | type | use | signature | key ID |
//! |---|---|---|---|
//! | `0x01` | log, Ed25519 | Ed25519 over the note text | SHA-256(name ‖ `\n` ‖ 0x01 ‖ key)\[:4\] |
//! | `0x02` | log, ECDSA P-256 | ASN.1 DER ECDSA over SHA-256(note text) | SHA-256(DER SPKI)\[:4\] |
//! | `0x04` | witness, cosignature/v1 | see [`crate::cosignature`] | SHA-256(name ‖ `\n` ‖ 0x04 ‖ key)\[:4\] |
//!
//! Text forms: a public *verifier key* (`vkey`) is
//! `<name>+<8 hex key ID>+<base64(type ‖ public key)>`, where the public key
//! is the 32-byte Ed25519 key or, for type 0x02, the DER `SubjectPublicKeyInfo`.
//! A private key is `PRIVATE+KEY+<name>+<8 hex key ID>+<base64(type ‖ secret)>`
//! with the 32-byte Ed25519 seed or P-256 scalar, as Go's `sumdb/note` writes
//! Ed25519 keys.

use base64::Engine as _;
use ed25519_dalek::{Verifier as _, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

use crate::cosignature;

mod signer;
pub use signer::{LogKeyAlgorithm, LogSigner, WitnessSigner};

/// Longest key text accepted, checked before parsing.
pub const MAX_KEY_TEXT: usize = 1024;
/// Longest key name accepted.
pub const MAX_KEY_NAME: usize = 256;

/// Signature type bytes of C2SP `signed-note`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `0x01`: Ed25519 over the note text.
    Ed25519,
    /// `0x02`: ECDSA P-256 with SHA-256, DER signature.
    EcdsaP256,
    /// `0x04`: timestamped Ed25519 witness cosignature (cosignature/v1).
    CosignatureV1,
}

impl KeyType {
    /// The type byte.
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::EcdsaP256 => 0x02,
            KeyType::CosignatureV1 => 0x04,
        }
    }

    fn from_byte(b: u8) -> Result<Self, KeyError> {
        match b {
            0x01 => Ok(KeyType::Ed25519),
            0x02 => Ok(KeyType::EcdsaP256),
            0x04 => Ok(KeyType::CosignatureV1),
            other => Err(KeyError::UnknownType(other)),
        }
    }
}

/// A key text that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Over the size limit; nothing was parsed.
    #[error("key text is {len} bytes; the limit is {MAX_KEY_TEXT}")]
    TooLong {
        /// Bytes given.
        len: usize,
    },
    /// Not of the `name+id+base64` form.
    #[error("key text must be {0}")]
    Format(&'static str),
    /// Name empty, too long, or with spaces or `+`.
    #[error("key name {0:?} must be 1 to {MAX_KEY_NAME} bytes without spaces, '+' or control characters")]
    BadName(String),
    /// Key material is not valid base64.
    #[error("key material is not valid base64")]
    Base64,
    /// Unsupported type byte.
    #[error(
        "unknown key type 0x{0:02x} (known: 0x01 Ed25519, 0x02 ECDSA P-256, 0x04 cosignature/v1)"
    )]
    UnknownType(u8),
    /// Wrong kind of key for the use.
    #[error("a {want} key is needed here; this is a {got:?} key")]
    WrongType {
        /// What the caller needs.
        want: &'static str,
        /// What the text holds.
        got: KeyType,
    },
    /// The key bytes do not decode for the type.
    #[error("key bytes are not a valid {0:?} key")]
    BadKey(KeyType),
    /// The key ID in the text does not match the key.
    #[error("key ID {given:08x} does not match the key, whose ID is {computed:08x}")]
    WrongKeyId {
        /// ID in the text.
        given: u32,
        /// ID of the key.
        computed: u32,
    },
}

/// Reports whether `name` may name a key (C2SP signed-note: non-empty, no
/// Unicode spaces, no `+`; Quire also refuses control characters and names
/// over [`MAX_KEY_NAME`] bytes).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_NAME
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(KeyError::BadName(name.chars().take(64).collect()))
    }
}

fn first_four(digest: &[u8]) -> u32 {
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The key ID of a key of `ty` under `name` with public key bytes `public`
/// (the 32-byte Ed25519 key, or the DER SPKI for ECDSA).
pub fn key_id(name: &str, ty: KeyType, public: &[u8]) -> u32 {
    let digest = match ty {
        KeyType::EcdsaP256 => Sha256::digest(public),
        KeyType::Ed25519 | KeyType::CosignatureV1 => {
            let mut h = Sha256::new();
            h.update(name.as_bytes());
            h.update([b'\n', ty.byte()]);
            h.update(public);
            h.finalize()
        }
    };
    first_four(&digest)
}

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

/// Splits `name+hexid+base64` and decodes it; returns name, ID, type, material.
fn split_key_text(text: &str) -> Result<(&str, u32, KeyType, Vec<u8>), KeyError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(KeyError::Format("<name>+<8 hex digit key ID>+<base64 key>"));
    };
    check_name(name)?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::Format("<name>+<8 hex digit key ID>+<base64 key>"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| KeyError::Format("an 8 hex digit key ID"))?;
    let bytes = b64().decode(material).map_err(|_| KeyError::Base64)?;
    let Some((&ty, _)) = bytes.split_first() else {
        return Err(KeyError::Format("a type byte followed by key bytes"));
    };
    Ok((name, id, KeyType::from_byte(ty)?, bytes))
}

fn check_len(text: &str) -> Result<(), KeyError> {
    if text.len() > MAX_KEY_TEXT {
        Err(KeyError::TooLong { len: text.len() })
    } else {
        Ok(())
    }
}

fn ed25519_public(ty: KeyType, bytes: &[u8]) -> Result<VerifyingKey, KeyError> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadKey(ty))?;
    VerifyingKey::from_bytes(&array).map_err(|_| KeyError::BadKey(ty))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PublicKey {
    Ed25519(VerifyingKey),
    EcdsaP256 {
        /// The `SubjectPublicKeyInfo`, as the vkey carries it.
        spki: Vec<u8>,
        /// The uncompressed point, for verification.
        point: Vec<u8>,
    },
    CosignatureV1(VerifyingKey),
}

/// A public key that verifies note signatures: a log's key or a witness's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: PublicKey,
}

/// What a verified signature says beyond "valid".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureCheck {
    /// Not a valid signature by this key.
    Invalid,
    /// A valid log signature.
    Valid,
    /// A valid cosignature made at this time (Unix seconds).
    Cosigned(u64),
}

impl VerifierKey {
    /// Parses a verifier key, `<name>+<hex ID>+<base64(type ‖ key)>`.
    ///
    /// # Errors
    /// [`KeyError`] naming what is wrong, including a key ID that does not
    /// match the key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        check_len(text)?;
        let (name, id, ty, bytes) = split_key_text(text)?;
        let material = &bytes[1..];
        let key = match ty {
            KeyType::Ed25519 => PublicKey::Ed25519(ed25519_public(ty, material)?),
            KeyType::CosignatureV1 => PublicKey::CosignatureV1(ed25519_public(ty, material)?),
            KeyType::EcdsaP256 => {
                let key = p256::ecdsa::VerifyingKey::from_public_key_der(material)
                    .map_err(|_| KeyError::BadKey(ty))?;
                PublicKey::EcdsaP256 {
                    spki: material.to_vec(),
                    point: key.to_encoded_point(false).as_bytes().to_vec(),
                }
            }
        };
        let v = VerifierKey {
            name: name.to_owned(),
            key_id: 0,
            key,
        };
        let computed = key_id(name, ty, &v.public_bytes());
        if computed != id {
            return Err(KeyError::WrongKeyId {
                given: id,
                computed,
            });
        }
        Ok(VerifierKey {
            key_id: computed,
            ..v
        })
    }

    fn public_bytes(&self) -> Vec<u8> {
        match &self.key {
            PublicKey::Ed25519(k) | PublicKey::CosignatureV1(k) => k.as_bytes().to_vec(),
            PublicKey::EcdsaP256 { spki, .. } => spki.clone(),
        }
    }

    /// The `vkey` text.
    pub fn to_vkey(&self) -> String {
        let mut bytes = vec![self.key_type().byte()];
        bytes.extend(self.public_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, b64().encode(bytes))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature type.
    pub fn key_type(&self) -> KeyType {
        match self.key {
            PublicKey::Ed25519(_) => KeyType::Ed25519,
            PublicKey::EcdsaP256 { .. } => KeyType::EcdsaP256,
            PublicKey::CosignatureV1(_) => KeyType::CosignatureV1,
        }
    }

    /// Checks `sig` (without the key ID prefix) over note `text`.
    pub(crate) fn check(&self, text: &[u8], sig: &[u8]) -> SignatureCheck {
        let ok = match &self.key {
            PublicKey::Ed25519(k) => {
                ed25519_dalek::Signature::from_slice(sig).is_ok_and(|s| k.verify(text, &s).is_ok())
            }
            PublicKey::EcdsaP256 { point, .. } => ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                point,
            )
            .verify(text, sig)
            .is_ok(),
            PublicKey::CosignatureV1(k) => {
                return match cosignature::check(k, text, sig) {
                    Some(ts) => SignatureCheck::Cosigned(ts),
                    None => SignatureCheck::Invalid,
                };
            }
        };
        if ok {
            SignatureCheck::Valid
        } else {
            SignatureCheck::Invalid
        }
    }
}
