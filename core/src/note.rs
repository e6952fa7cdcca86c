//! C2SP `signed-note`: a text followed by a blank line and signature lines
//! `— <key name> <base64(key ID ‖ signature)>`.
//!
//! Verification follows the spec: signatures from unknown keys (name and ID
//! not both matching a configured key) are ignored; a signature from a known
//! key must verify or the whole note is rejected; at least one must verify.

use base64::Engine as _;

use crate::checkpoint::is_note_text;
use crate::keys::{is_valid_key_name, SignatureCheck, VerifierKey};

/// Largest note accepted, checked before parsing.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted (C2SP requires at least 16).
pub const MAX_SIGNATURES: usize = 64;

const DASH: &str = "\u{2014} ";

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    name: String,
    key_id: u32,
    signature: Vec<u8>,
}

impl NoteSignature {
    pub(crate) fn from_parts(name: String, key_id: u32, signature: Vec<u8>) -> Self {
        NoteSignature {
            name,
            key_id,
            signature,
        }
    }

    /// The signer's key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signer's key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature bytes, without the key ID.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The signature line, with its newline.
    pub fn to_line(&self) -> String {
        let mut bytes = Vec::with_capacity(4 + self.signature.len());
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&self.signature);
        format!(
            "{DASH}{} {}\n",
            self.name,
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    fn parse_line(line: &str) -> Result<Self, NoteError> {
        let bad = || NoteError::BadSignatureLine(line.chars().take(80).collect());
        let rest = line.strip_prefix(DASH).ok_or_else(bad)?;
        let (name, b64) = rest.split_once(' ').ok_or_else(bad)?;
        if !is_valid_key_name(name) {
            return Err(bad());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        if bytes.len() < 5 {
            return Err(bad());
        }
        let key_id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id,
            signature: bytes[4..].to_vec(),
        })
    }
}

/// A signed note.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// A note that is not a valid signed note.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Over the size limit; nothing was parsed.
    #[error("note is {len} bytes; the limit is {MAX_NOTE_BYTES}")]
    TooLarge {
        /// Bytes given.
        len: usize,
    },
    /// Not UTF-8 or holds control characters other than newline.
    #[error("note must be UTF-8 text without control characters other than newline")]
    NotText,
    /// No blank line separating text and signatures.
    #[error("note has no blank line before its signature lines")]
    NoSignatureBlock,
    /// Text not ending in a newline, or empty.
    #[error("note text must be non-empty and end with a newline")]
    BadText,
    /// No signature lines.
    #[error("note has no signature lines")]
    NoSignatures,
    /// Too many signature lines.
    #[error("note has {count} signature lines; the limit is {MAX_SIGNATURES}")]
    TooManySignatures {
        /// Lines found.
        count: usize,
    },
    /// A malformed signature line.
    #[error("malformed signature line {0:?}")]
    BadSignatureLine(String),
}

/// A note's signatures did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteVerifyError {
    /// A signature from a known key is invalid.
    #[error("signature by {name} (key ID {key_id:08x}) does not verify")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// No signature from any known key.
    #[error("no signature from a known key; the note is signed by: {signers}")]
    NoKnownSignature {
        /// The names and key IDs present.
        signers: String,
    },
}

/// A signature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The verifier key that checked it.
    pub key: VerifierKey,
    /// For a cosignature, when it was made (Unix seconds).
    pub timestamp: Option<u64>,
}

impl Note {
    /// A note with `text` (must end in a newline) and no signatures yet.
    ///
    /// # Errors
    /// [`NoteError::BadText`] or [`NoteError::NotText`] for text that cannot
    /// be a note's text.
    pub fn new(text: &str) -> Result<Self, NoteError> {
        if text.is_empty() || !text.ends_with('\n') || text.ends_with("\n\n") {
            return Err(NoteError::BadText);
        }
        if !is_note_text(text) {
            return Err(NoteError::NotText);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note.
    ///
    /// # Errors
    /// [`NoteError`] naming the first problem found.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { len: bytes.len() });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotText)?;
        if !is_note_text(s) {
            return Err(NoteError::NotText);
        }
        // The text ends at the last blank line.
        let Some(split) = s.rfind("\n\n") else {
            return Err(NoteError::NoSignatureBlock);
        };
        let text = &s[..=split];
        let sigs = &s[split + 2..];
        if text.len() < 2 {
            return Err(NoteError::BadText);
        }
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::NoSignatures);
        };
        if sigs.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let count = sigs.split('\n').count();
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { count });
        }
        let signatures = sigs
            .split('\n')
            .map(NoteSignature::parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note text, ending in a newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signatures, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature line (one made over [`Note::text`]).
    ///
    /// # Errors
    /// [`NoteError::TooManySignatures`] at the limit.
    pub fn add_signature(&mut self, sig: NoteSignature) -> Result<(), NoteError> {
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count: self.signatures.len() + 1,
            });
        }
        self.signatures.push(sig);
        Ok(())
    }

    /// The signed note's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
        }
        out.into_bytes()
    }

    /// Verifies the note against `known` keys: every signature by a known
    /// key must verify and at least one must. Returns one entry per distinct
    /// known key that signed.
    ///
    /// # Errors
    /// [`NoteVerifyError`] naming the bad signature, or the signers present
    /// when none is known.
    pub fn verify(&self, known: &[VerifierKey]) -> Result<Vec<VerifiedSignature>, NoteVerifyError> {
        let mut verified: Vec<VerifiedSignature> = Vec::new();
        for sig in &self.signatures {
            let Some(key) = known
                .iter()
                .find(|k| k.key_id() == sig.key_id && k.name() == sig.name)
            else {
                continue;
            };
            let timestamp = match key.check(self.text.as_bytes(), &sig.signature) {
                SignatureCheck::Invalid => {
                    return Err(NoteVerifyError::BadSignature {
                        name: sig.name.clone(),
                        key_id: sig.key_id,
                    })
                }
                SignatureCheck::Valid => None,
                SignatureCheck::Cosigned(ts) => Some(ts),
            };
            if !verified.iter().any(|v| &v.key == key) {
                verified.push(VerifiedSignature {
                    key: key.clone(),
                    timestamp,
                });
            }
        }
        if verified.is_empty() {
            let signers = self
                .signatures
                .iter()
                .map(|s| format!("{}+{:08x}", s.name, s.key_id))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(NoteVerifyError::NoKnownSignature { signers });
        }
        Ok(verified)
    }
}
