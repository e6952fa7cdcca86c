//! Trust in a log: its origin and keys, and a witness policy (k of n
//! configured witnesses must have cosigned a checkpoint before it is
//! trusted). C2SP `tlog-cosignature` and `tlog-witness` describe the
//! cosignatures; the policy itself is the client's.

use quire_core::note::VerifiedSignature;
use quire_core::tlog_proof::{verify_checkpoint_note, TlogProofVerifyError};
use quire_core::{Checkpoint, Note, VerifierKey};

/// What a client trusts for one log.
#[derive(Clone, Debug)]
pub struct LogTrust {
    /// The log's origin line.
    pub origin: String,
    /// Keys whose signature makes a checkpoint the log's.
    pub log_keys: Vec<VerifierKey>,
    /// Witnesses whose cosignatures count.
    pub witnesses: Vec<VerifierKey>,
    /// Cosignatures needed (0: none).
    pub quorum: usize,
}

/// A checkpoint that failed the trust checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Signature, origin or format.
    #[error(transparent)]
    Checkpoint(#[from] TlogProofVerifyError),
    /// Too few witnesses cosigned.
    #[error("{have} of the required {need} witness cosignatures (cosigned by: {by}; configured: {configured})")]
    Quorum {
        /// Valid cosignatures from configured witnesses.
        have: usize,
        /// The quorum.
        need: usize,
        /// Who cosigned.
        by: String,
        /// Who is configured.
        configured: String,
    },
}

impl LogTrust {
    /// Trust in the log `origin` under its key `key` alone, no witnesses.
    pub fn of_key(origin: &str, key: VerifierKey) -> Self {
        LogTrust {
            origin: origin.to_owned(),
            log_keys: vec![key],
            witnesses: Vec::new(),
            quorum: 0,
        }
    }

    /// Verifies a signed checkpoint note against the log's keys, the origin
    /// and the witness policy.
    ///
    /// # Errors
    /// [`TrustError`] saying what is missing or wrong.
    pub fn verify_note(
        &self,
        note: &Note,
    ) -> Result<(Checkpoint, Vec<VerifiedSignature>), TrustError> {
        let (cp, sigs) =
            verify_checkpoint_note(note, &self.origin, &self.log_keys, &self.witnesses)?;
        self.check_quorum(&sigs)?;
        Ok((cp, sigs))
    }

    /// Counts distinct configured witnesses among verified signatures.
    ///
    /// # Errors
    /// [`TrustError::Quorum`] below the quorum.
    pub fn check_quorum(&self, sigs: &[VerifiedSignature]) -> Result<(), TrustError> {
        let cosigners: Vec<&VerifiedSignature> = sigs
            .iter()
            .filter(|s| self.witnesses.contains(&s.key))
            .collect();
        if cosigners.len() >= self.quorum {
            return Ok(());
        }
        let names = |keys: &mut dyn Iterator<Item = &VerifierKey>| {
            let v: Vec<String> = keys.map(|k| k.name().to_owned()).collect();
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        Err(TrustError::Quorum {
            have: cosigners.len(),
            need: self.quorum,
            by: names(&mut cosigners.iter().map(|s| &s.key)),
            configured: names(&mut self.witnesses.iter()),
        })
    }
}
