//! The lease of a log: which server sequences it, for how long, on the
//! database's clock (`clock_timestamp()`), with an epoch that grows at every
//! takeover.
//!
//! A lease is taken only once the previous one expired, and every takeover
//! makes a new epoch, so a server restarted under the same name is fenced
//! from its former self. The holder counts its lease from before it asked
//! (its own monotonic clock), so it stops writing before the database
//! would let another server take over; and every commit locks the lease row
//! and checks holder, epoch and expiry inside its transaction, so a server
//! that wakes after a pause past its lease commits nothing even if it
//! missed that the lease is gone. Safety rests on that check and on the
//! head's compare-and-swap, never on the lease's timing alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::types::Type;

use super::bounded;
use super::conn::Column as _;
use super::{PgStore, Shared};
use crate::store::StoreError;

/// A lease held by this server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it (unique per server process).
    pub holder: String,
    /// Its epoch: one more than the lease before it.
    pub epoch: i64,
    /// Until when this server may write, on its own monotonic clock: the
    /// moment it asked plus the lease's duration, less a margin for clock
    /// rate differences.
    pub valid_until: Instant,
}

/// Who holds a log's lease, as the database says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Who.
    pub holder: String,
    /// Where it takes writes (its advertised gRPC address).
    pub address: String,
    /// Its epoch.
    pub epoch: i64,
}

/// A margin taken off every lease for clock rates that differ (a tenth,
/// at least 50 ms).
fn margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(50))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Takes the log's lease for `ttl` when nobody holds a valid one (a new
    /// epoch), and fences this store's commits with it.
    ///
    /// # Errors
    /// [`StoreError::Engine`] from the database, or for a holder or
    /// address over 4,096 bytes.
    pub fn acquire(
        &self,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        if holder.len() > bounded::LEASE_TEXT || address.len() > bounded::LEASE_TEXT {
            return Err(StoreError::engine(format!(
                "a lease's holder and address are at most {} bytes each",
                bounded::LEASE_TEXT
            )));
        }
        let (s, holder, address, ttl_ms) = (
            Arc::clone(&self.shared),
            holder.to_owned(),
            address.to_owned(),
            ms(ttl),
        );
        let asked = Instant::now();
        let got = self.shared.driver.run("taking the lease", async move {
            let c = s.reader().await?;
            let row = c
                .row_opt(
                    "INSERT INTO quire_leases (log, holder, address, epoch, expires)
                     VALUES ($1, $2, $3, 1, clock_timestamp() + $4 * interval '1 millisecond')
                     ON CONFLICT (log) DO UPDATE
                       SET holder = EXCLUDED.holder, address = EXCLUDED.address,
                           epoch = quire_leases.epoch + 1, expires = EXCLUDED.expires
                       WHERE quire_leases.expires < clock_timestamp()
                     RETURNING epoch",
                    &[
                        (&s.log, Type::INT8),
                        (&holder, Type::TEXT),
                        (&address, Type::TEXT),
                        (&ttl_ms, Type::INT8),
                    ],
                )
                .await?;
            row.map(|r| Ok((holder, r.col::<i64>(0)?))).transpose()
        })?;
        let lease = got.map(|(holder, epoch)| Lease {
            holder,
            epoch,
            valid_until: asked + ttl.saturating_sub(margin(ttl)),
        });
        self.set_fence(lease.clone());
        Ok(lease)
    }

    /// Extends `lease` by `ttl` from now, if it is still this server's and
    /// valid; `None` once it is gone (then this store is no longer fenced
    /// with it, and refuses to commit).
    ///
    /// # Errors
    /// [`StoreError::Engine`] from the database (the lease then runs out on
    /// its own).
    pub fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let (s, holder, epoch, ttl_ms) = (
            Arc::clone(&self.shared),
            lease.holder.clone(),
            lease.epoch,
            ms(ttl),
        );
        let asked = Instant::now();
        let renewed = self.shared.driver.run("renewing the lease", async move {
            let c = s.reader().await?;
            let n = c
                .exec(
                    "UPDATE quire_leases SET expires = clock_timestamp() + $4 * interval '1 millisecond'
                     WHERE log = $1 AND holder = $2 AND epoch = $3 AND expires > clock_timestamp()",
                    &[
                        (&s.log, Type::INT8),
                        (&holder, Type::TEXT),
                        (&epoch, Type::INT8),
                        (&ttl_ms, Type::INT8),
                    ],
                )
                .await?;
            Ok(n == 1)
        })?;
        let lease = renewed.then(|| Lease {
            valid_until: asked + ttl.saturating_sub(margin(ttl)),
            ..lease.clone()
        });
        self.set_fence(lease.clone());
        Ok(lease)
    }

    /// Gives `lease` up at once (a clean shutdown), so that another server
    /// takes over without waiting for it to expire.
    ///
    /// # Errors
    /// [`StoreError::Engine`] from the database.
    pub fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.set_fence(None);
        let (s, holder, epoch) = (Arc::clone(&self.shared), lease.holder.clone(), lease.epoch);
        self.shared.driver.run("releasing the lease", async move {
            let c = s.reader().await?;
            c.exec(
                "UPDATE quire_leases SET expires = clock_timestamp()
                 WHERE log = $1 AND holder = $2 AND epoch = $3",
                &[
                    (&s.log, Type::INT8),
                    (&holder, Type::TEXT),
                    (&epoch, Type::INT8),
                ],
            )
            .await?;
            Ok(())
        })
    }

    /// Who holds a valid lease of the log now, if anyone.
    ///
    /// # Errors
    /// [`StoreError::Engine`] from the database.
    pub fn holder(&self) -> Result<Option<Holder>, StoreError> {
        let s = Arc::clone(&self.shared);
        self.shared.driver.run("reading the lease", async move {
            let c = s.reader().await?;
            let row = c
                .row_opt(
                    "SELECT left(holder, $2), left(address, $2), epoch FROM quire_leases
                     WHERE log = $1 AND expires > clock_timestamp()",
                    &[
                        (&s.log, Type::INT8),
                        (&bounded::param(bounded::LEASE_TEXT), Type::INT4),
                    ],
                )
                .await?;
            row.map(|r| {
                let text = |i: usize, what: &str| {
                    bounded::within(r.col::<String>(i)?, bounded::LEASE_TEXT, || {
                        format!("the stored lease's {what}")
                    })
                };
                Ok(Holder {
                    holder: text(0, "holder")?,
                    address: text(1, "address")?,
                    epoch: r.col(2)?,
                })
            })
            .transpose()
        })
    }

    /// Makes every later commit conditional on `lease` (`None`: on nothing;
    /// a store that never took a lease commits unconditionally, as one
    /// server alone does).
    fn set_fence(&self, lease: Option<Lease>) {
        *self
            .shared
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Fence::from(lease);
    }
}

/// What a store's commits are conditional on.
#[derive(Clone, Debug, Default)]
pub(crate) enum Fence {
    /// Nothing: this store never took a lease.
    #[default]
    None,
    /// This lease, still valid.
    Held(Lease),
    /// A lease this store held and lost: it commits nothing any more.
    Lost,
}

impl From<Option<Lease>> for Fence {
    fn from(l: Option<Lease>) -> Self {
        match l {
            Some(l) => Fence::Held(l),
            None => Fence::Lost,
        }
    }
}

impl Shared {
    /// Whether commits are fenced by a lease (a replica's store).
    pub(crate) fn fenced(&self) -> bool {
        !matches!(
            *self
                .fence
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Fence::None
        )
    }

    /// The lease commits must hold, checked against this server's clock:
    /// `Ok(None)` when the store is not fenced.
    pub(crate) fn fence(&self) -> Result<Option<Lease>, StoreError> {
        let fence = self
            .fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match fence {
            Fence::None => Ok(None),
            Fence::Lost => Err(StoreError::NotLeader(format!(
                "this server no longer holds the lease of log {:?}",
                self.origin
            ))),
            Fence::Held(l) if Instant::now() >= l.valid_until => {
                Err(StoreError::NotLeader(format!(
                    "the lease (epoch {}) of log {:?} ran out before it was renewed",
                    l.epoch, self.origin
                )))
            }
            Fence::Held(l) => Ok(Some(l)),
        }
    }
}
