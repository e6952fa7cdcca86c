//! The verifying client: it keeps a trusted checkpoint per log
//! ([`crate::state`]) and moves it forward only to a checkpoint that is
//! signed by the log, meets the witness policy and is proven consistent with
//! the trusted one. It never moves backwards or onto a fork; on a fork it
//! returns split-view evidence (quire-core's [`SplitViewEvidence`]) that
//! anyone can check with the log's public key.

use quire_core::tlog_proof::verify_checkpoint_note;
use quire_core::{verify_inclusion, Checkpoint, Hash, Note, SplitViewEvidence};

use crate::extend::{check_extension, ExtendError, Signed};

use crate::policy::{LogTrust, TrustError};
use crate::rpc::{LogRpc, RpcError};
use crate::state::{StateError, TrustedState};

/// Why the trusted checkpoint did not move.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The log could not be asked.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The offered checkpoint is not trusted (signature, origin, witnesses).
    #[error("checkpoint from the log not trusted: {0}")]
    Untrusted(#[from] TrustError),
    /// The offered checkpoint is malformed.
    #[error("checkpoint from the log is malformed: {0}")]
    Malformed(String),
    /// The log offered a smaller tree than the trusted one.
    #[error("the log offered a tree of size {offered}, smaller than the trusted size {trusted}: a rollback")]
    Rollback {
        /// Trusted size.
        trusted: u64,
        /// Offered size.
        offered: u64,
    },
    /// Two signed histories: evidence anyone can check.
    #[error("the log signed two histories; the evidence checks with its key alone")]
    Fork(Box<SplitViewEvidence>),
    /// The consistency proof does not connect the two checkpoints (and does
    /// not by itself prove a fork).
    #[error("no valid consistency proof from the trusted size {trusted} to {offered}: {why}")]
    Inconsistent {
        /// Trusted size.
        trusted: u64,
        /// Offered size.
        offered: u64,
        /// What failed.
        why: String,
    },
    /// The trusted state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// An inclusion proof that does not lead to the trusted root.
    #[error("entry {index} is not proven in the trusted checkpoint of size {size}: {why}")]
    NotIncluded {
        /// The index the log claimed.
        index: u64,
        /// Trusted size.
        size: u64,
        /// Why.
        why: String,
    },
}

/// A client that verifies before it trusts.
pub struct VerifyingClient {
    rpc: LogRpc,
    trust: LogTrust,
    state: TrustedState,
}

impl VerifyingClient {
    /// A client of one log.
    pub fn new(rpc: LogRpc, trust: LogTrust, state: TrustedState) -> Self {
        VerifyingClient { rpc, trust, state }
    }

    /// The trusted checkpoint, if any.
    pub fn trusted(&self) -> Option<Checkpoint> {
        let note = Note::parse(self.state.trusted(&self.trust.origin)?).ok()?;
        Checkpoint::parse(note.text().as_bytes()).ok()
    }

    /// Proves that the entry with leaf hash `leaf` is in the log: updates the
    /// trusted checkpoint, asks the log for an inclusion proof in exactly
    /// that tree, and verifies it against the trusted root. Returns the
    /// entry's index and the checkpoint it is proven in.
    ///
    /// # Errors
    /// [`UpdateError`] from the update, or [`UpdateError::NotIncluded`].
    pub async fn prove(&mut self, leaf: Hash) -> Result<(u64, Checkpoint), UpdateError> {
        let cp = self.update().await?;
        let (index, proof) = self
            .rpc
            .inclusion(&self.trust.origin, None, leaf, cp.size())
            .await?;
        verify_inclusion(&leaf, index, cp.size(), &proof, cp.root()).map_err(|e| {
            UpdateError::NotIncluded {
                index,
                size: cp.size(),
                why: e.to_string(),
            }
        })?;
        Ok((index, cp))
    }

    /// Fetches the log's latest checkpoint and, if it verifies and extends
    /// the trusted one, persists and returns it.
    ///
    /// # Errors
    /// [`UpdateError`]; on a fork, [`UpdateError::Fork`] with the evidence.
    /// The trusted state is unchanged on every error.
    pub async fn update(&mut self) -> Result<Checkpoint, UpdateError> {
        let origin = self.trust.origin.clone();
        let offered_bytes = self.rpc.checkpoint(&origin).await?;
        let offered_note =
            Note::parse(&offered_bytes).map_err(|e| UpdateError::Malformed(e.to_string()))?;
        let (offered, _) = self.trust.verify_note(&offered_note)?;
        let Some(trusted_bytes) = self.state.trusted(&origin).map(<[u8]>::to_vec) else {
            self.state.set(&origin, &offered_note.to_bytes())?;
            return Ok(offered);
        };
        // The state file is re-checked: an edited file must not be trusted.
        let trusted_note = Note::parse(&trusted_bytes)
            .map_err(|e| UpdateError::Malformed(format!("trusted state: {e}")))?;
        let (trusted, _) = verify_checkpoint_note(
            &trusted_note,
            &origin,
            &self.trust.log_keys,
            &self.trust.witnesses,
        )
        .map_err(|e| UpdateError::Malformed(format!("trusted state: {e}")))?;
        let offered_signed = offered_note.to_bytes();
        let old = Signed {
            note: &trusted_bytes,
            checkpoint: &trusted,
        };
        let new = Signed {
            note: &offered_signed,
            checkpoint: &offered,
        };
        check_extension(&mut self.rpc, &origin, &self.trust.log_keys, old, new)
            .await
            .map_err(|e| match e {
                ExtendError::Rpc(e) => UpdateError::Rpc(e),
                ExtendError::Rollback { old, new } => UpdateError::Rollback {
                    trusted: old,
                    offered: new,
                },
                ExtendError::Fork(ev) => UpdateError::Fork(ev),
                ExtendError::Inconsistent { old, new, why } => UpdateError::Inconsistent {
                    trusted: old,
                    offered: new,
                    why,
                },
            })?;
        if trusted.size() == offered.size() {
            return Ok(offered);
        }
        self.state.set(&origin, &offered_note.to_bytes())?;
        Ok(offered)
    }
}
