//! A commit's entry bundles: those it completes (encoded by the
//! committing thread while the transaction opens, or in the transaction
//! for the one that starts with earlier commits' entries), and the entries
//! that stay in single rows until their bundle is complete.

use tokio_postgres::types::Type;

use super::super::conn::Column as _;
use super::super::session::Session;
use super::super::statement::{exec, exec_owned, expect};
use super::{Plan, Work};
use crate::store::bundle;
use crate::store::StoreError;

/// A bundle that a commit completes: its index, the entries of earlier
/// commits it starts with (read in the transaction), and this commit's:
/// their place in the commit, and a copy when the bundle starts with
/// earlier entries (a bundle of this commit's alone is encoded from the
/// commit by the committing thread while the transaction opens).
pub(super) struct Completed {
    pub(super) bundle: i64,
    pub(super) from: i64,
    pub(super) prior: i64,
    pub(super) range: std::ops::Range<usize>,
    pub(super) new: Vec<Vec<u8>>,
}

impl Plan {
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
        for b in self.completed.iter().filter(|b| b.prior > 0) {
            let rows = client
                .rows(
                    "SELECT data FROM quire_entries WHERE log = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                    &[(&log, Type::INT8), (&b.from, Type::INT8), (&(b.from + b.prior), Type::INT8)],
                )
                .await?;
            let mut entries = rows
                .iter()
                .map(|r| r.col::<Vec<u8>>(0))
                .collect::<Result<Vec<_>, _>>()?;
            if i64::try_from(entries.len()).ok() != Some(b.prior) {
                return Err(StoreError::Corrupt(format!(
                    "entry bundle {} has {} entries stored, expected {}",
                    b.bundle,
                    entries.len(),
                    b.prior
                )));
            }
            entries.extend(b.new.iter().cloned());
            bundles.push((b, bundle::encode(&entries, self.compress)));
        }
        let fresh: Vec<&Completed> = self.completed.iter().filter(|b| b.prior == 0).collect();
        if !fresh.is_empty() {
            let encoded = encoded
                .await
                .map_err(|_| StoreError::engine("the bundles of the commit were not encoded"))?;
            if encoded.len() != fresh.len() {
                return Err(StoreError::engine(format!(
                    "{} bundles encoded for a commit that fills {}",
                    encoded.len(),
                    fresh.len()
                )));
            }
            bundles.extend(fresh.into_iter().zip(encoded));
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
                "INSERT INTO quire_entries (log, idx, data) SELECT $1, * FROM unnest($2::int8[], $3::bytea[])",
                vec![(&self.log, Type::INT8), (&self.single.0, Type::INT8_ARRAY), (&self.single.1, Type::BYTEA_ARRAY)],
                expect(n, "entries".into()),
            )));
        }
        for (b, data) in bundles {
            work.push(Box::pin(exec(
                client,
                "INSERT INTO quire_bundles (log, idx, data) VALUES ($1, $2, $3)",
                vec![
                    (&self.log, Type::INT8),
                    (&b.bundle, Type::INT8),
                    (data, Type::BYTEA),
                ],
                expect(1, format!("entry bundle {}", b.bundle)),
            )));
            if b.prior > 0 {
                let end = b.from + b.prior;
                work.push(Box::pin(exec_owned(
                    client,
                    "DELETE FROM quire_entries WHERE log = $1 AND idx >= $2 AND idx < $3",
                    [self.log, b.from, end],
                    expect(
                        u64::try_from(b.prior).unwrap_or(0),
                        format!("moving bundle {}", b.bundle),
                    ),
                )));
            }
        }
        work
    }
}
