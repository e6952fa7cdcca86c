//! Private keys: a log's signer (Ed25519 or ECDSA P-256) and a witness's
//! cosigner, with their text forms.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use super::{
    b64, check_len, check_name, key_id, split_key_text, KeyError, KeyType, PublicKey, VerifierKey,
};
use crate::cosignature;
use crate::note::NoteSignature;

#[derive(Clone)]
enum LogSecret {
    Ed25519(SigningKey),
    EcdsaP256(P256Secret),
}

/// A P-256 key: the `p256` crate's form for its texts and public key, and
/// `ring`'s for signing, which takes a ninth of the time (about 22 µs
/// against 180 µs a signature on the benchmark machine; `cargo bench
/// --bench signatures -- sign`), a cost every commit pays once.
#[derive(Clone)]
struct P256Secret {
    key: p256::ecdsa::SigningKey,
    /// `None` only if `ring` refused a key `p256` accepts; signing then
    /// falls back to `p256`.
    ring: Option<std::sync::Arc<ring::signature::EcdsaKeyPair>>,
}

impl P256Secret {
    fn new(key: p256::ecdsa::SigningKey) -> Self {
        let scalar = Zeroizing::new(key.to_bytes());
        let point = key.verifying_key().to_encoded_point(false);
        let ring = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &scalar,
            point.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .ok()
        .map(std::sync::Arc::new);
        P256Secret { key, ring }
    }

    /// An ASN.1 DER signature of `text` (SHA-256), as C2SP signed-note's
    /// ECDSA type carries it.
    fn sign(&self, text: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        if let Some(pair) = &self.ring {
            // `ring` fails only when the system's random source does.
            if let Ok(sig) = pair.sign(&ring::rand::SystemRandom::new(), text) {
                return sig.as_ref().to_vec();
            }
        }
        let s: p256::ecdsa::Signature = self.key.sign(text);
        s.to_der().as_bytes().to_vec()
    }
}

/// A log's private key: signs checkpoints with Ed25519 (type 0x01) or ECDSA
/// P-256 (type 0x02). Its `Debug` form never shows the secret.
#[derive(Clone)]
pub struct LogSigner {
    name: String,
    key_id: u32,
    secret: LogSecret,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogSigner({}+{:08x})", self.name, self.key_id)
    }
}

/// Which algorithm a new log key uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKeyAlgorithm {
    /// Ed25519, type 0x01.
    Ed25519,
    /// ECDSA P-256, type 0x02.
    EcdsaP256,
}

/// A private key text, split: name, key ID, type and `type ‖ secret` bytes.
type PrivateParts<'a> = (&'a str, u32, KeyType, Zeroizing<Vec<u8>>);

fn parse_private(text: &str) -> Result<PrivateParts<'_>, KeyError> {
    check_len(text)?;
    let Some(rest) = text.strip_prefix("PRIVATE+KEY+") else {
        return Err(KeyError::Format(
            "PRIVATE+KEY+<name>+<hex key ID>+<base64 key>",
        ));
    };
    let (name, id, ty, bytes) = split_key_text(rest)?;
    let bytes = Zeroizing::new(bytes);
    if bytes.len() != 33 {
        return Err(KeyError::BadKey(ty));
    }
    Ok((name, id, ty, bytes))
}

fn private_text(name: &str, key_id: u32, ty: KeyType, secret: &[u8]) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(33));
    bytes.push(ty.byte());
    bytes.extend_from_slice(secret);
    Zeroizing::new(format!(
        "PRIVATE+KEY+{name}+{key_id:08x}+{}",
        b64().encode(&*bytes)
    ))
}

fn check_id(given: u32, computed: u32) -> Result<(), KeyError> {
    if given == computed {
        Ok(())
    } else {
        Err(KeyError::WrongKeyId { given, computed })
    }
}

impl LogSigner {
    /// A new key from the operating system's random source.
    ///
    /// # Errors
    /// [`KeyError::BadName`] for an invalid name.
    pub fn generate(alg: LogKeyAlgorithm, name: &str) -> Result<Self, KeyError> {
        Self::generate_with(alg, name, &mut rand_core::OsRng)
    }

    /// A new key from `rng`.
    ///
    /// # Errors
    /// [`KeyError::BadName`] for an invalid name.
    pub fn generate_with(
        alg: LogKeyAlgorithm,
        name: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, KeyError> {
        check_name(name)?;
        let secret = match alg {
            LogKeyAlgorithm::Ed25519 => LogSecret::Ed25519(SigningKey::generate(rng)),
            LogKeyAlgorithm::EcdsaP256 => {
                LogSecret::EcdsaP256(P256Secret::new(p256::ecdsa::SigningKey::random(rng)))
            }
        };
        Ok(Self::from_secret(name, secret))
    }

    /// The key of algorithm `alg` whose secret is `secret` (an Ed25519
    /// seed, or a P-256 scalar in big-endian), for keys derived rather than
    /// drawn at random.
    ///
    /// # Errors
    /// [`KeyError::BadName`] for an invalid name; [`KeyError::BadKey`] for
    /// a P-256 scalar that is zero or not below the group order.
    pub fn from_secret_bytes(
        alg: LogKeyAlgorithm,
        name: &str,
        secret: &[u8; 32],
    ) -> Result<Self, KeyError> {
        check_name(name)?;
        let secret = match alg {
            LogKeyAlgorithm::Ed25519 => LogSecret::Ed25519(SigningKey::from_bytes(secret)),
            LogKeyAlgorithm::EcdsaP256 => LogSecret::EcdsaP256(P256Secret::new(
                p256::ecdsa::SigningKey::from_bytes(&(*secret).into())
                    .map_err(|_| KeyError::BadKey(KeyType::EcdsaP256))?,
            )),
        };
        Ok(Self::from_secret(name, secret))
    }

    fn from_secret(name: &str, secret: LogSecret) -> Self {
        let mut s = LogSigner {
            name: name.to_owned(),
            key_id: 0,
            secret,
        };
        s.key_id = s.verifier().key_id;
        s
    }

    /// Parses a private key text of type 0x01 or 0x02.
    ///
    /// # Errors
    /// [`KeyError`], including [`KeyError::WrongType`] for a witness key.
    pub fn from_private_text(text: &str) -> Result<Self, KeyError> {
        let (name, id, ty, bytes) = parse_private(text)?;
        let Ok(secret) = <[u8; 32]>::try_from(&bytes[1..]) else {
            return Err(KeyError::BadKey(ty));
        };
        let secret = Zeroizing::new(secret);
        let secret = match ty {
            KeyType::Ed25519 => LogSecret::Ed25519(SigningKey::from_bytes(&secret)),
            KeyType::EcdsaP256 => LogSecret::EcdsaP256(P256Secret::new(
                p256::ecdsa::SigningKey::from_bytes(&(*secret).into())
                    .map_err(|_| KeyError::BadKey(ty))?,
            )),
            KeyType::CosignatureV1 => {
                return Err(KeyError::WrongType {
                    want: "log (0x01 or 0x02)",
                    got: ty,
                })
            }
        };
        let signer = Self::from_secret(name, secret);
        check_id(id, signer.key_id)?;
        Ok(signer)
    }

    /// The private key text. Keep it secret: write it to a file of mode 0600.
    pub fn to_private_text(&self) -> Zeroizing<String> {
        match &self.secret {
            LogSecret::Ed25519(k) => {
                private_text(&self.name, self.key_id, KeyType::Ed25519, k.as_bytes())
            }
            LogSecret::EcdsaP256(k) => {
                let bytes = Zeroizing::new(k.key.to_bytes());
                private_text(&self.name, self.key_id, KeyType::EcdsaP256, &bytes)
            }
        }
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        let key = match &self.secret {
            LogSecret::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            LogSecret::EcdsaP256(k) => {
                let key = *k.key.verifying_key();
                // Encoding a valid point as SPKI cannot fail.
                let spki = key
                    .to_public_key_der()
                    .map(|d| d.as_bytes().to_vec())
                    .unwrap_or_default();
                PublicKey::EcdsaP256 {
                    spki,
                    point: key.to_encoded_point(false).as_bytes().to_vec(),
                }
            }
        };
        let mut v = VerifierKey {
            name: self.name.clone(),
            key_id: 0,
            key,
        };
        v.key_id = key_id(&v.name, v.key_type(), &v.public_bytes());
        v
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Signs note `text`, giving the signature line's content.
    pub fn sign(&self, text: &[u8]) -> NoteSignature {
        let sig = match &self.secret {
            LogSecret::Ed25519(k) => k.sign(text).to_bytes().to_vec(),
            LogSecret::EcdsaP256(k) => k.sign(text),
        };
        NoteSignature::from_parts(self.name.clone(), self.key_id, sig)
    }
}

/// A witness's private key: makes cosignature/v1 signatures (type 0x04).
/// Its `Debug` form never shows the secret.
#[derive(Clone)]
pub struct WitnessSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for WitnessSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessSigner({}+{:08x})", self.name, self.key_id)
    }
}

impl WitnessSigner {
    /// A new key from the operating system's random source.
    ///
    /// # Errors
    /// [`KeyError::BadName`] for an invalid name.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        Self::generate_with(name, &mut rand_core::OsRng)
    }

    /// A new key from `rng`.
    ///
    /// # Errors
    /// [`KeyError::BadName`] for an invalid name.
    pub fn generate_with(name: &str, rng: &mut impl CryptoRngCore) -> Result<Self, KeyError> {
        check_name(name)?;
        Ok(Self::from_key(name, SigningKey::generate(rng)))
    }

    fn from_key(name: &str, key: SigningKey) -> Self {
        let key_id = key_id(name, KeyType::CosignatureV1, key.verifying_key().as_bytes());
        WitnessSigner {
            name: name.to_owned(),
            key_id,
            key,
        }
    }

    /// Parses a private key text of type 0x04.
    ///
    /// # Errors
    /// [`KeyError`], including [`KeyError::WrongType`] for a log key.
    pub fn from_private_text(text: &str) -> Result<Self, KeyError> {
        let (name, id, ty, bytes) = parse_private(text)?;
        if ty != KeyType::CosignatureV1 {
            return Err(KeyError::WrongType {
                want: "witness (0x04)",
                got: ty,
            });
        }
        let Ok(secret) = <[u8; 32]>::try_from(&bytes[1..]) else {
            return Err(KeyError::BadKey(ty));
        };
        let signer = Self::from_key(name, SigningKey::from_bytes(&Zeroizing::new(secret)));
        check_id(id, signer.key_id)?;
        Ok(signer)
    }

    /// The private key text. Keep it secret: write it to a file of mode 0600.
    pub fn to_private_text(&self) -> Zeroizing<String> {
        private_text(
            &self.name,
            self.key_id,
            KeyType::CosignatureV1,
            self.key.as_bytes(),
        )
    }

    /// The matching verifier key (type 0x04).
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: PublicKey::CosignatureV1(self.key.verifying_key()),
        }
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Cosigns checkpoint text (the note text, without signatures) at
    /// `timestamp` (Unix seconds).
    ///
    /// # Errors
    /// [`cosignature::CosignError`] when the timestamp is over 2^63 − 1.
    pub fn cosign(
        &self,
        checkpoint_text: &[u8],
        timestamp: u64,
    ) -> Result<NoteSignature, cosignature::CosignError> {
        let sig = cosignature::sign(&self.key, checkpoint_text, timestamp)?;
        Ok(NoteSignature::from_parts(
            self.name.clone(),
            self.key_id,
            sig,
        ))
    }
}
