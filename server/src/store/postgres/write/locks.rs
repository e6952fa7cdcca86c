//! The first round trip's locks: the lease row (the fence) and the log's
//! head row (the compare-and-swap), each `FOR UPDATE` and checked before
//! anything is written.

use quire_core::Hash;
use tokio_postgres::types::Type;

use super::super::conn::{uint, Column as _};
use super::super::session::Session;
use super::Plan;
use crate::store::{check_head, Commit, Head, StoreError};

impl Plan {
    /// The fence, when the store has one: the lease row, locked first (a
    /// takeover waits for this commit to end), must still be this server's
    /// epoch and unexpired on the database's clock, so a lease that ran
    /// out (a pause, a partition) commits nothing.
    pub(super) async fn lock_lease(&self, client: &Session, log: i64) -> Result<(), StoreError> {
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        let held = client
            .row_opt(
                "SELECT 1 FROM quire_leases
                 WHERE log = $1 AND holder = $2 AND epoch = $3 AND expires > clock_timestamp()
                 FOR UPDATE",
                &[
                    (&log, Type::INT8),
                    (&lease.holder, Type::TEXT),
                    (&lease.epoch, Type::INT8),
                ],
            )
            .await?;
        if held.is_none() {
            return Err(StoreError::NotLeader(format!(
                "the database no longer holds this server's lease (epoch {})",
                lease.epoch
            )));
        }
        Ok(())
    }

    /// The compare-and-swap: the head row, locked until the transaction
    /// ends, must be the commit's base.
    pub(super) async fn lock_head(&self, client: &Session, log: i64) -> Result<(), StoreError> {
        let row = client
            .row_opt(
                "SELECT size, root FROM quire_heads WHERE log = $1 FOR UPDATE",
                &[(&log, Type::INT8)],
            )
            .await?;
        let stored = match row {
            Some(r) => Some(Head {
                size: uint(r.col(0)?)?,
                root: Hash::from_slice(r.col::<&[u8]>(1)?)
                    .map_err(|_| StoreError::Corrupt("the stored head's root".into()))?,
            }),
            None => None,
        };
        check_head(
            stored,
            &Commit {
                base: self.base,
                ..Commit::default()
            },
        )
    }
}
