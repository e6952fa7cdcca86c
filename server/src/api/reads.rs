//! Writes, checkpoints and proofs: the requests with one answer.

use std::sync::Arc;

use quire_core::{inclusion_plan, root_at, Hash, VerifierKey};

use super::{blocking, read_view, short_read, tree_size, Action, ApiError, Caller, LogApi};
use crate::lifecycle::LogState;
use crate::log::{Added, Latest, Log};
use crate::proofs::{checked_consistency, checked_inclusion, signed_root};
use crate::store::{Storage, StorageReader};

/// What a write gets back.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// The log that took the entries (a family's shard, when the request
    /// named the family).
    pub origin: String,
    /// One per entry, in the order given.
    pub entries: Vec<Added>,
    /// The checkpoint the proofs are against (when proofs were asked for).
    pub checkpoint: Option<Vec<u8>>,
    /// The inclusion proof of each entry (when asked for), in the order
    /// given.
    pub proofs: Vec<Vec<Hash>>,
}

/// Which leaf an inclusion proof is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafRef {
    /// By index.
    Index(u64),
    /// By leaf hash (the log's leaf index finds it).
    Hash(Hash),
}

/// An inclusion proof.
#[derive(Clone, Debug)]
pub struct Inclusion {
    /// The leaf's index.
    pub index: u64,
    /// The tree size it is proven in.
    pub tree_size: u64,
    /// RFC 9162 §2.1.3 audit path.
    pub proof: Vec<Hash>,
    /// The latest checkpoint, when the latest size was asked for (size 0).
    pub checkpoint: Option<Vec<u8>>,
}

/// A consistency proof.
#[derive(Clone, Debug)]
pub struct Consistency {
    /// The older size.
    pub old_size: u64,
    /// The newer size.
    pub new_size: u64,
    /// RFC 9162 §2.1.4 proof.
    pub proof: Vec<Hash>,
    /// When asked for and there is one: the old root itself when the old
    /// size is a power of two (RFC 9162 leaves it out of the proof then),
    /// else the proof's first hash.
    pub seed: Option<Hash>,
}

/// An entry with its inclusion proof in the latest checkpoint.
#[derive(Clone, Debug)]
pub struct EntryWithProof {
    /// Its index.
    pub index: u64,
    /// Its bytes, checked against the leaf hash.
    pub entry: Vec<u8>,
    /// Its inclusion proof in the tree of the checkpoint.
    pub proof: Vec<Hash>,
    /// The latest checkpoint.
    pub checkpoint: Vec<u8>,
}

/// A log as `ListLogs` shows it.
#[derive(Clone, Debug)]
pub struct LogSummary {
    /// Its origin.
    pub origin: String,
    /// The keys its checkpoints are signed with.
    pub verifier_keys: Vec<VerifierKey>,
    /// Its state.
    pub state: LogState,
    /// Its latest signed size.
    pub size: u64,
    /// When its latest checkpoint was signed, Unix milliseconds.
    pub signed_at_ms: u64,
    /// When it was frozen, Unix milliseconds.
    pub frozen_at_ms: Option<u64>,
    /// When its entries were dropped, Unix milliseconds.
    pub entries_dropped_at_ms: Option<u64>,
    /// The family it is a shard of, with the period it covers
    /// `[start, end)`, Unix milliseconds.
    pub shard: Option<(String, u64, u64)>,
}

impl LogSummary {
    /// What `log` shows now.
    pub fn of<S: Storage>(log: &Log<S>) -> Self {
        let latest = log.latest();
        let (state, frozen) = log.state();
        LogSummary {
            origin: log.origin().to_owned(),
            verifier_keys: log.verifiers().to_vec(),
            state,
            size: latest.stored.size,
            signed_at_ms: latest.stored.signed_at_ms,
            frozen_at_ms: frozen.map(|f| f.at_ms),
            entries_dropped_at_ms: log.dropped().map(|d| d.at_ms),
            shard: None,
        }
    }
}

impl<S: Storage> LogApi<S> {
    /// Appends `entries` to the log `origin` and waits until they are
    /// durable and signed; with `proofs`, answers with each entry's
    /// inclusion proof and the checkpoint they are against: the witnessed
    /// one when `witnessed` (waiting for the quorum as the policy says).
    ///
    /// # Errors
    /// The log's [`crate::log::WriteError`], an unknown log, a refusal of
    /// access, a witnessed write to a log without witnesses, or the
    /// witnesses' quorum missing under fail closed (UNAVAILABLE; the
    /// entries are stored).
    pub async fn add(
        &self,
        caller: &Caller,
        origin: &str,
        entries: Vec<Vec<u8>>,
        proofs: bool,
        witnessed: bool,
    ) -> Result<Written, ApiError> {
        let log = self.log_for(caller, origin, Action::Write, entries.len() as u64)?;
        if proofs && witnessed {
            self.witnessing_of(&log)?;
        }
        let mut entries = Some(entries);
        let recheck = |next: &str| {
            if self.access.may(caller, next, Action::Write) {
                Ok(())
            } else {
                self.access.check(caller, next, Action::Write, 0)
            }
        };
        let (log, (added, latest)) = self
            .write_routed(caller, origin, log, recheck, |log, again| {
                // Kept only for a write that may go again.
                let batch = if again {
                    entries.clone()
                } else {
                    entries.take()
                }
                .unwrap_or_default();
                async move { Ok(log.add(batch).await?) }
            })
            .await?;
        let witnessing = if proofs && witnessed {
            Some(self.witnessing_of(&log)?)
        } else {
            None
        };
        if !proofs {
            return Ok(Written {
                origin: log.origin().to_owned(),
                entries: added,
                ..Written::default()
            });
        }
        let last = added.iter().map(|a| a.index).max().unwrap_or(0);
        let (size, note) = match witnessing {
            Some(w) => w.for_write(&latest, last).await?,
            None => (latest.stored.size, latest.stored.note.clone()),
        };
        let proofs = inclusion_proofs(&log, added.iter().map(|a| a.index).collect(), size).await?;
        Ok(Written {
            origin: log.origin().to_owned(),
            entries: added,
            checkpoint: Some(note),
            proofs,
        })
    }

    /// The latest checkpoint of `origin`: the witnessed one when
    /// `witnessed`.
    ///
    /// # Errors
    /// An unknown log, a refusal of access, no witnesses, or no quorum under
    /// fail closed.
    pub async fn checkpoint(
        &self,
        caller: &Caller,
        origin: &str,
        witnessed: bool,
    ) -> Result<Vec<u8>, ApiError> {
        let log = self.log(caller, origin, Action::Audit)?;
        if witnessed {
            Ok(self.witnessing_of(&log)?.for_read(&log.latest()).await?)
        } else {
            Ok(log.latest().stored.note.clone())
        }
    }

    /// The inclusion proof of `leaf` in the tree of `tree_size` (0: the
    /// latest, whose checkpoint comes with it).
    ///
    /// # Errors
    /// An unknown leaf hash (`NOT_FOUND`), an index or size out of range,
    /// damaged storage (`DATA_LOSS`), an unknown log, a refusal of access.
    pub async fn inclusion_proof(
        &self,
        caller: &Caller,
        origin: &str,
        leaf: LeafRef,
        tree_size_asked: u64,
    ) -> Result<Inclusion, ApiError> {
        let log = self.log(caller, origin, Action::Audit)?;
        let latest = log.latest();
        let size = tree_size(tree_size_asked, latest.stored.size)?;
        let index = match leaf {
            LeafRef::Index(i) => i,
            // A lookup in the leaf index touches a few cached pages: inline
            // (on an embedded engine).
            LeafRef::Hash(h) => {
                let l = log.clone();
                short_read(&log, move || Ok(read_view(&l)?.find_leaf(&h)?))
                    .await?
                    .ok_or_else(|| {
                        ApiError::NotFound(format!("no entry with leaf hash {h} in this log"))
                    })?
            }
        };
        let proof = inclusion_proofs(&log, vec![index], size)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(Inclusion {
            index,
            tree_size: size,
            proof,
            checkpoint: (tree_size_asked == 0).then(|| latest.stored.note.clone()),
        })
    }

    /// The consistency proof from `old` to `new` (0: the latest), with its
    /// seed when `with_seed`.
    ///
    /// # Errors
    /// Sizes out of range or in the wrong order, damaged storage, an unknown
    /// log, a refusal of access.
    pub async fn consistency_proof(
        &self,
        caller: &Caller,
        origin: &str,
        old: u64,
        new: u64,
        with_seed: bool,
    ) -> Result<Consistency, ApiError> {
        let log = self.log(caller, origin, Action::Audit)?;
        let latest = log.latest();
        let new = tree_size(new, latest.stored.size)?;
        // A consistency proof reads a few cached pages, like one inclusion
        // proof: inline (on an embedded engine).
        let l = log.clone();
        let (proof, seed) = short_read(&log, move || {
            let r = read_view(&l)?;
            let proof = checked_consistency(&r, &latest, old, new)?;
            let seed = match proof.first() {
                _ if !with_seed || old == 0 || old >= new => None,
                _ if old.is_power_of_two() => {
                    Some(root_at(&r, old).map_err(crate::proofs::ProofError::from)?)
                }
                first => first.copied(),
            };
            Ok((proof, seed))
        })
        .await?;
        Ok(Consistency {
            old_size: old,
            new_size: new,
            proof,
            seed,
        })
    }

    /// Entry `index` with its inclusion proof in the latest checkpoint.
    ///
    /// # Errors
    /// An index out of range, damaged storage, an unknown log, a refusal of
    /// access.
    pub async fn entry_with_proof(
        &self,
        caller: &Caller,
        origin: &str,
        index: u64,
    ) -> Result<EntryWithProof, ApiError> {
        let log = self.log(caller, origin, Action::ReadEntries)?;
        entry_with_proof(&log, index).await
    }

    /// The logs `caller` may audit.
    ///
    /// # Errors
    /// [`ApiError::Unauthenticated`] for invalid credentials.
    pub fn list(&self, caller: &Caller) -> Result<Vec<LogSummary>, ApiError> {
        self.access.authenticate(caller)?;
        Ok(self
            .registry()
            .logs
            .values()
            .filter(|l| self.access.may(caller, l.origin(), Action::Audit))
            .map(|l| self.summary(l))
            .collect())
    }

    /// `log` as `ListLogs` shows it, with the family it is a shard of.
    pub fn summary(&self, log: &Log<S>) -> LogSummary {
        LogSummary {
            shard: self.family_of(log.origin()),
            ..LogSummary::of(log)
        }
    }
}

/// Inclusion proofs of `indexes` in the tree of `size`, from one read view,
/// each checked against the signed root of `size`.
async fn inclusion_proofs<S: Storage>(
    log: &Log<S>,
    indexes: Vec<u64>,
    size: u64,
) -> Result<Vec<Vec<Hash>>, ApiError> {
    let many = indexes.len() > 4;
    let l = log.clone();
    let latest: Arc<Latest> = log.latest();
    let work = move || {
        // Impossible requests (index ≥ size) are OUT_OF_RANGE from the
        // proofs' own plans, before the root is looked up.
        let plans = indexes
            .iter()
            .map(|&i| inclusion_plan(i, size))
            .collect::<Result<Vec<_>, _>>()?;
        let r = read_view(&l)?;
        let root = signed_root(&r, &latest, size)?;
        indexes
            .iter()
            .zip(&plans)
            .map(|(&i, plan)| Ok(checked_inclusion(&r, plan, i, size, &root)?))
            .collect()
    };
    // One proof is a few cached page reads, and a thread-pool hop costs
    // more than the read: inline. Many go to a worker.
    if many {
        blocking(work).await
    } else {
        work()
    }
}

/// Entry `index` of `log`, checked against its leaf hash, with its
/// inclusion proof in the latest checkpoint (checked against its root).
///
/// # Errors
/// An index out of range, damaged storage.
pub(super) async fn entry_with_proof<S: Storage>(
    log: &Log<S>,
    index: u64,
) -> Result<EntryWithProof, ApiError> {
    let latest = log.latest();
    let size = latest.stored.size;
    let plan = inclusion_plan(index, size)?;
    let l = log.clone();
    let signed = Arc::clone(&latest);
    let (entry, proof) = blocking(move || {
        let r = read_view(&l)?;
        let entry = r
            .checked_entries(index, index + 1)?
            .pop()
            .ok_or_else(|| ApiError::Internal("entry missing from storage".into()))?;
        let proof = checked_inclusion(&r, &plan, index, size, &signed.root)?;
        Ok((entry, proof))
    })
    .await?;
    Ok(EntryWithProof {
        index,
        entry,
        proof,
        checkpoint: latest.stored.note.clone(),
    })
}
