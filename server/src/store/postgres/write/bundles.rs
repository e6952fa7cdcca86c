//! A commit's entry bundles: those it completes (encoded by the
//! committing thread while the transaction opens, or in the transaction
//! for the one that starts with earlier commits' entries), and the entries
//! that stay in single rows until their bundle is complete.

use tokio_postgres::types::Type;

use super::super::bounded;
use super::super::conn::Column as _;
use super::super::session::Session;
use super::super::statement::{checked, exec, exec_owned};
use super::{Plan, Work};
use crate::store::bundle;
use crate::store::StoreError;

/// A bundle that a commit completes: its index, its first entry's, and
/// this commit's entries in it.
pub(super) struct Completed {
    pub(super) bundle: i64,
    pub(super) from: i64,
    pub(super) new: New,
}

/// This commit's entries in a bundle it completes.
pub(super) enum New {
    /// The whole bundle, by its place in the commit: encoded by the
    /// committing thread while the transaction opens.
    Alone(std::ops::Range<usize>),
    /// The rest of a bundle that starts with `prior` entries of earlier
    /// commits (read in the transaction): a copy, encoded there.
    After { prior: i64, entries: Vec<Vec<u8>> },
}

impl Plan {
    /// Where in the commit are the bundles it fills alone, in order.
    pub(super) fn alone(&self) -> Vec<std::ops::Range<usize>> {
        self.completed
            .iter()
            .filter_map(|b| match &b.new {
                New::Alone(range) => Some(range.clone()),
                New::After { .. } => None,
            })
            .collect()
    }

    /// The records of the bundles this commit completes: one that starts
    /// with entries of earlier commits (at most the first) read and encoded
    /// here, the others as `encoded` brings them.
    pub(super) async fn bundles(
        &self,
        client: &Session,
        log: i64,
        encoded: tokio::sync::oneshot::Receiver<Vec<Vec<u8>>>,
    ) -> Result<Vec<(&Completed, Vec<u8>)>, StoreError> {
        let mut bundles = Vec::with_capacity(self.completed.len());
        let mut alone = Vec::new();
        for b in &self.completed {
            let (prior, new) = match &b.new {
                New::Alone(_) => {
                    alone.push(b);
                    continue;
                }
                New::After { prior, entries } => (*prior, entries),
            };
            let rows = client
                .rows(
                    "SELECT substring(data FROM 1 FOR $4) FROM quire_entries
                     WHERE log = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                    &[
                        (&log, Type::INT8),
                        (&b.from, Type::INT8),
                        (&(b.from + prior), Type::INT8),
                        (&bounded::param(bounded::ENTRY), Type::INT4),
                    ],
                )
                .await?;
            let mut entries = rows
                .iter()
                .map(|r| {
                    bounded::within(r.col::<Vec<u8>>(0)?, bounded::ENTRY, || {
                        format!("a stored entry of bundle {}", b.bundle)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if i64::try_from(entries.len()).ok() != Some(prior) {
                return Err(StoreError::Corrupt(format!(
                    "entry bundle {} has {} entries stored, expected {prior}",
                    b.bundle,
                    entries.len(),
                )));
            }
            entries.extend(new.iter().cloned());
            bundles.push((b, bundle::encode(&entries, self.compress)));
        }
        if !alone.is_empty() {
            let encoded = encoded
                .await
                .map_err(|_| StoreError::engine("the bundles of the commit were not encoded"))?;
            if encoded.len() != alone.len() {
                return Err(StoreError::engine(format!(
                    "{} bundles encoded for a commit that fills {}",
                    encoded.len(),
                    alone.len()
                )));
            }
            bundles.extend(alone.into_iter().zip(encoded));
        }
        Ok(bundles)
    }

    /// Entries in single rows, completed bundles, and the single rows those
    /// replace.
    pub(super) fn bundle_statements<'a>(
        &'a self,
        client: &'a Session,
        bundles: &'a [(&Completed, Vec<u8>)],
    ) -> Vec<Work<'a>> {
        let mut work: Vec<Work<'a>> = Vec::new();
        if !self.single.0.is_empty() {
            let n = self.single.0.len() as u64;
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_entries (log, idx, data) SELECT $1, * FROM unnest($2::int8[], $3::bytea[])",
                    4,
                    5
                ),
                vec![
                    (&self.log, Type::INT8),
                    (&self.single.0, Type::INT8_ARRAY),
                    (&self.single.1, Type::BYTEA_ARRAY),
                ],
                n,
                "entries".into(),
            )));
        }
        for (b, data) in bundles {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_bundles (log, idx, data) VALUES ($1, $2, $3)",
                    4,
                    5
                ),
                vec![
                    (&self.log, Type::INT8),
                    (&b.bundle, Type::INT8),
                    (data, Type::BYTEA),
                ],
                1,
                format!("entry bundle {}", b.bundle),
            )));
            if let New::After { prior, .. } = b.new {
                let end = b.from + prior;
                work.push(Box::pin(exec_owned(
                    client,
                    checked!(
                        "DELETE FROM quire_entries WHERE log = $1 AND idx >= $2 AND idx < $3",
                        4,
                        5
                    ),
                    [self.log, b.from, end],
                    u64::try_from(prior).unwrap_or(0),
                    format!("moving bundle {}", b.bundle),
                )));
            }
        }
        work
    }
}
