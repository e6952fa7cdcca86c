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
