//! Assigning a batch's entries their indexes, request by request: the
//! dedup policy's answers, the appends to the right edge, and the commit
//! they make. The sequencer assigns a whole batch at once, or, while the
//! commit before is under way, each request as it arrives
//! ([`super::flight`]).

use std::collections::HashMap;

use quire_core::{CompactRange, Hash};

use super::{append_entry, Integrate, RecentLeaves};
use crate::batch::{Added, DedupPolicy, Request, WriteError};
use crate::events::{EventSeq, Sealed};
use crate::store::leaf_index::LeafMap;
use crate::store::{Commit, Head};

/// What the dedup policy consults while assigning.
pub(super) struct Rules<'a> {
    pub(super) dedup: DedupPolicy,
    pub(super) recent: &'a RecentLeaves,
    pub(super) events: Option<&'a EventSeq>,
}

/// A batch's assignment so far: its commit (without a checkpoint), the
/// tree after it, and each request's answers.
pub(super) struct Assigned {
    pub(super) commit: Commit,
    pub(super) range: CompactRange,
    pub(super) per_request: Vec<Vec<Added>>,
    /// Each request's sealed events.
    pub(super) sealed: Vec<Vec<Sealed>>,
    /// The newest event of each key of the batch's events.
    pub(super) newest: HashMap<Hash, u64>,
    /// The batch's own new leaves (dedup within the batch).
    in_batch: LeafMap<Hash, u64>,
}

impl Assigned {
    /// An empty assignment onto the tree `range`, whose root is `root`.
    pub(super) fn new(range: CompactRange, root: Hash) -> Self {
        Assigned {
            commit: Commit {
                base: Head {
                    size: range.size(),
                    root,
                },
                ..Commit::default()
            },
            range,
            per_request: Vec::new(),
            sealed: Vec::new(),
            newest: HashMap::new(),
            in_batch: LeafMap::default(),
        }
    }

    /// Assigns `req`'s entries, whose leaf hashes (and, when a lookup was
    /// made, stored indexes) `leaves` yields, and seals its events at log
    /// time `now`. The entries move into the commit: no copy on the write
    /// path.
    ///
    /// # Errors
    /// [`WriteError::Invalid`] for fewer leaf hashes than entries, a tree
    /// at its maximum size, or events the log cannot seal. The assignment
    /// is then unusable: [`Assigned::restore`] gives back what the
    /// requests before `req` carried.
    pub(super) fn add(
        &mut self,
        rules: &Rules<'_>,
        req: &mut Request,
        leaves: &mut impl Iterator<Item = (Hash, Option<u64>)>,
        now: u64,
    ) -> Result<(), Integrate> {
        let mut added = Vec::with_capacity(req.entries.len());
        for entry in std::mem::take(&mut req.entries) {
            let Some((leaf, in_store)) = leaves.next() else {
                return Err(Integrate::Write(WriteError::Invalid(
                    "batch changed while integrating".into(),
                )));
            };
            let seen = match rules.dedup {
                DedupPolicy::Off => None,
                DedupPolicy::BestEffort => self
                    .in_batch
                    .get(&leaf)
                    .copied()
                    .or_else(|| rules.recent.get(&leaf)),
                DedupPolicy::Strict => in_store.or_else(|| self.in_batch.get(&leaf).copied()),
            };
            if let Some(index) = seen {
                added.push(Added {
                    index,
                    duplicate: true,
                });
                continue;
            }
            let index = append_entry(&mut self.range, &mut self.commit, entry, leaf)
                .map_err(|e| Integrate::Write(WriteError::Invalid(e.to_string())))?;
            if rules.dedup != DedupPolicy::Off {
                self.in_batch.insert(leaf, index);
            }
            added.push(Added {
                index,
                duplicate: false,
            });
        }
        let drafts = std::mem::take(&mut req.events);
        let sealed_here = match rules.events {
            None if drafts.is_empty() => Vec::new(),
            None => {
                return Err(Integrate::Write(WriteError::Invalid(
                    "events sent to a log not in event mode".into(),
                )))
            }
            Some(events) => events
                .seal(
                    drafts,
                    now,
                    &mut self.range,
                    &mut self.commit,
                    &mut self.newest,
                )
                .map_err(|e| Integrate::Write(WriteError::Invalid(e)))?,
        };
        added.extend(sealed_here.iter().map(|s| Added {
            index: s.index,
            duplicate: false,
        }));
        self.per_request.push(added);
        self.sealed.push(sealed_here);
        Ok(())
    }

    /// Each assigned request's entries again, in request order (see
    /// [`restore`]); `None` if an answer names an index outside the
    /// commit.
    pub(super) fn restore(&self) -> Option<Vec<Vec<Vec<u8>>>> {
        restore(
            &self.per_request,
            &self.commit.entries,
            self.commit.base.size,
        )
    }
}

/// Each request's entries again, from its answers and the commit's
/// entries (a duplicate within the batch names the index of its first
/// copy, which is in the commit: nothing was looked up). `None` if an
/// answer names an index outside the commit.
pub(super) fn restore(
    per_request: &[Vec<Added>],
    entries: &[Vec<u8>],
    first: u64,
) -> Option<Vec<Vec<Vec<u8>>>> {
    per_request
        .iter()
        .map(|added| {
            added
                .iter()
                .map(|a| {
                    let at = usize::try_from(a.index.checked_sub(first)?).ok()?;
                    entries.get(at).cloned()
                })
                .collect()
        })
        .collect()
}
