//! A commit's entry bundles: those it completes (encoded by the
//! committing thread while the transaction opens, or in the transaction
//! for the one that starts with earlier commits' entries), and the entries
//! of the bundle still filling, one row a commit until their bundle is
//! complete ([`super::super::filling`]).

use tokio_postgres::types::Type;

use super::super::bounded;
use super::super::conn::{uint, Column as _};
use super::super::filling;
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

    /// The record of the bundle this commit completes after entries of
    /// earlier commits (at most the first), those read and encoded here.
    pub(super) async fn bundle_after(
        &self,
        client: &Session,
        log: i64,
    ) -> Result<Option<(&Completed, Vec<u8>)>, StoreError> {
        let Some((b, prior, new)) = self.completed.iter().find_map(|b| match &b.new {
            New::Alone(_) => None,
            New::After { prior, entries } => Some((b, *prior, entries)),
        }) else {
            return Ok(None);
        };
        let rows = client
            .rows(
                "SELECT idx, n, substring(data FROM 1 FOR $4) FROM quire_entries
                 WHERE log = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                &[
                    (&log, Type::INT8),
                    (&b.from, Type::INT8),
                    (&(b.from + prior), Type::INT8),
                    (&bounded::param(bounded::BUNDLE), Type::INT4),
                ],
            )
            .await?;
        let mut entries = Vec::new();
        for r in &rows {
            let idx = r.col::<i64>(0)?;
            // Each row starts where the one before it ended.
            if i64::try_from(entries.len()).ok().map(|k| b.from + k) != Some(idx) {
                return Err(StoreError::Corrupt(format!(
                    "entry bundle {}: a stored row starts at entry {idx}, after {} of its entries",
                    b.bundle,
                    entries.len()
                )));
            }
            entries.extend(filling::decode(uint(idx)?, r.col(1)?, r.col(2)?)?);
        }
        if i64::try_from(entries.len()).ok() != Some(prior) {
            return Err(StoreError::Corrupt(format!(
                "entry bundle {} has {} entries stored, expected {prior}",
                b.bundle,
                entries.len(),
            )));
        }
        entries.extend(new.iter().cloned());
        Ok(Some((b, bundle::encode(&entries, self.compress))))
    }

    /// Writes the bundles this commit fills alone, as `encoded` brings
    /// them: in the first round trip, behind the locks. They carry entries
    /// and nothing signed; a commit its checks refuse rolls them back with
    /// the rest.
    pub(super) async fn bundles_alone(
        &self,
        client: &Session,
        encoded: tokio::sync::oneshot::Receiver<Vec<Vec<u8>>>,
    ) -> Result<(), StoreError> {
        let alone: Vec<&Completed> = self
            .completed
            .iter()
            .filter(|b| matches!(b.new, New::Alone(_)))
            .collect();
        if alone.is_empty() {
            return Ok(());
        }
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
        let writes = alone
            .iter()
            .zip(&encoded)
            .map(|(b, data)| self.insert_bundle(client, b, data));
        futures_util::future::join_all(writes)
            .await
            .into_iter()
            .collect()
    }

    /// One completed bundle's record.
    fn insert_bundle<'a>(
        &'a self,
        client: &'a Session,
        b: &'a Completed,
        data: &'a Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'a {
        exec(
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
        )
    }

    /// The row of entries of the bundle still filling, the bundle
    /// completed after earlier commits' entries, and the rows it replaces.
    pub(super) fn bundle_statements<'a>(
        &'a self,
        client: &'a Session,
        after: Option<&'a (&'a Completed, Vec<u8>)>,
    ) -> Vec<Work<'a>> {
        let mut work: Vec<Work<'a>> = Vec::new();
        if let Some((first, n, data)) = &self.filling {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_entries (log, idx, n, data) VALUES ($1, $2, $3, $4)",
                    5,
                    6
                ),
                vec![
                    (&self.log, Type::INT8),
                    (first, Type::INT8),
                    (n, Type::INT4),
                    (data, Type::BYTEA),
                ],
                1,
                format!("the row of entries from {first}"),
            )));
        }
        if let Some((b, data)) = after {
            work.push(Box::pin(self.insert_bundle(client, b, data)));
            if let New::After { prior, .. } = b.new {
                let end = b.from + prior;
                // Checked by the entries the rows held, not the rows.
                work.push(Box::pin(exec_owned(
                    client,
                    "WITH w AS (DELETE FROM quire_entries WHERE log = $1 AND idx >= $2 AND idx < $3
                                RETURNING n)
                     SELECT quire_expect(coalesce(sum(n), 0), $4, $5) FROM w",
                    [self.log, b.from, end],
                    u64::try_from(prior).unwrap_or(0),
                    format!("moving bundle {}", b.bundle),
                )));
            }
        }
        work
    }
}
