//! C2SP `tlog-cosignature` cosignature/v1 (signature type 0x04): a witness's
//! timestamped Ed25519 signature over
//!
//! ```text
//! cosignature/v1\n
//! time <unix seconds>\n
//! <checkpoint text>
//! ```
//!
//! The signature field is the 8-byte big-endian timestamp followed by the
//! 64-byte Ed25519 signature. Only the Ed25519 form is implemented; the
//! ML-DSA-44 subtree form is out of scope.

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};

/// Bytes of a cosignature/v1 signature field: timestamp and Ed25519 signature.
pub const COSIGNATURE_LEN: usize = 8 + 64;
/// Largest timestamp the format allows.
pub const MAX_TIMESTAMP: u64 = (1 << 63) - 1;

/// A cosignature could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignError {
    /// Timestamp over 2^63 − 1.
    #[error("cosignature timestamp {0} exceeds the limit of 2^63-1")]
    TimestampTooLarge(u64),
}

/// The message a cosignature/v1 signs.
pub fn message(checkpoint_text: &[u8], timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(checkpoint_text);
    m
}

pub(crate) fn sign(
    key: &SigningKey,
    checkpoint_text: &[u8],
    timestamp: u64,
) -> Result<Vec<u8>, CosignError> {
    if timestamp > MAX_TIMESTAMP {
        return Err(CosignError::TimestampTooLarge(timestamp));
    }
    let sig = key.sign(&message(checkpoint_text, timestamp));
    let mut out = Vec::with_capacity(COSIGNATURE_LEN);
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&sig.to_bytes());
    Ok(out)
}

/// The timestamp of a valid cosignature, `None` when it does not verify.
pub(crate) fn check(key: &VerifyingKey, checkpoint_text: &[u8], sig: &[u8]) -> Option<u64> {
    if sig.len() != COSIGNATURE_LEN {
        return None;
    }
    let (ts, sig) = sig.split_at(8);
    let timestamp = u64::from_be_bytes(ts.try_into().ok()?);
    if timestamp > MAX_TIMESTAMP {
        return None;
    }
    let sig = ed25519_dalek::Signature::from_slice(sig).ok()?;
    key.verify(&message(checkpoint_text, timestamp), &sig)
        .ok()
        .map(|()| timestamp)
}

/// Most signature lines read from a witness's answer.
pub const MAX_ANSWER_LINES: usize = 16;
/// Longest signature line read from a witness's answer, bytes.
pub const MAX_ANSWER_LINE: usize = 1024;

/// Signature lines from a witness that do not hold a cosignature by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// More lines than [`MAX_ANSWER_LINES`], a line over
    /// [`MAX_ANSWER_LINE`] or without its newline, or lines that do not
    /// parse as signature lines.
    #[error("malformed cosignature lines: {0}")]
    Malformed(String),
    /// A line by the key does not verify, or none is there, or the key is
    /// not a cosignature/v1 key.
    #[error("no valid cosignature by {0}")]
    NotCosigned(String),
}

/// The cosignature by `key` among the signature `lines` a witness answered
/// (C2SP `tlog-witness`: "— name base64\n" each), verified over
/// `checkpoint_text`, with its timestamp. Lines by other keys are ignored.
///
/// # Errors
/// [`AnswerError`], the limits checked before parsing.
pub fn verify_answer(
    checkpoint_text: &str,
    lines: &[String],
    key: &crate::VerifierKey,
) -> Result<(crate::NoteSignature, u64), AnswerError> {
    if lines.len() > MAX_ANSWER_LINES {
        return Err(AnswerError::Malformed(format!(
            "{} lines; the limit is {MAX_ANSWER_LINES}",
            lines.len()
        )));
    }
    let mut note = checkpoint_text.as_bytes().to_vec();
    note.push(b'\n');
    for l in lines {
        if l.len() > MAX_ANSWER_LINE || !l.ends_with('\n') {
            return Err(AnswerError::Malformed(format!(
                "a line must end in a newline and be at most {MAX_ANSWER_LINE} bytes"
            )));
        }
        note.extend_from_slice(l.as_bytes());
    }
    let parsed = crate::Note::parse(&note).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    let who = || format!("{}+{:08x}", key.name(), key.key_id());
    let verified = parsed
        .verify(std::slice::from_ref(key))
        .map_err(|e| AnswerError::NotCosigned(format!("{}: {e}", who())))?;
    let timestamp = verified
        .first()
        .and_then(|v| v.timestamp)
        .ok_or_else(|| AnswerError::NotCosigned(format!("{} (not a cosignature/v1 key)", who())))?;
    let sig = parsed
        .signatures()
        .iter()
        .find(|s| s.key_id() == key.key_id() && s.name() == key.name())
        .cloned()
        .ok_or_else(|| AnswerError::NotCosigned(who()))?;
    Ok((sig, timestamp))
}
