//! Log families: logs that roll over to a new shard by period, with zero
//! failed writes at the boundary.
//!
//! A family (`[[families]]`) has an origin, `acme.example/audit`, and a
//! period (a UTC day, month or year); its shards are logs like any other,
//! `acme.example/audit/2026-12`, each covering one period. Writes and
//! reads may name the family: the log API sends them to the shard whose
//! period holds the server's clock (the latest created shard that began,
//! by its label, which sorts as its time does). [`Families::tick`] creates
//! the shards of the current period and the next `ahead` ones before they
//! are needed, and freezes a shard once its period is over and its
//! successor is served: a write sent to it meanwhile is either integrated
//! there (it was admitted before the freeze) or refused as DRAINING or
//! FROZEN and sent again, by the API, to the successor. So a writer that
//! names the family never sees the boundary.
//!
//! A family with `drop_entries_after_days` drops the entries of each
//! frozen shard that many days after its period ended, once its final
//! checkpoint is witnessed ([`crate::api::LogApi::drop_entries`]); a shard
//! whose entries are kept for now is tried again on the next tick, and
//! why is logged once per reason.
//!
//! Out of scope: families created through the admin service (they are
//! configured).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

use crate::admin::Admin;
use crate::config::FamilyConfig;
use crate::lifecycle::LogState;
use crate::log::Clock;
use crate::store::Storage;

/// The period one shard covers, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    /// A day: labels `2026-12-04`.
    Day,
    /// A month: labels `2026-12`.
    Month,
    /// A year: labels `2026`.
    Year,
}

fn ms_of(date: Date) -> u64 {
    u64::try_from(date.midnight().assume_utc().unix_timestamp()).unwrap_or(0) * 1000
}

fn date_of(ms: u64) -> Date {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date()
}

impl Period {
    /// The first day of the period holding `date`.
    fn first(self, date: Date) -> Date {
        let (y, m) = (date.year(), date.month());
        match self {
            Period::Day => date,
            Period::Month => Date::from_calendar_date(y, m, 1).unwrap_or(date),
            Period::Year => Date::from_calendar_date(y, Month::January, 1).unwrap_or(date),
        }
    }

    /// The first day of the period after the one starting `first`.
    fn after(self, first: Date) -> Date {
        let next = match self {
            Period::Day => first.next_day(),
            Period::Month => {
                let (y, m) = match first.month() {
                    Month::December => (first.year() + 1, Month::January),
                    m => (first.year(), m.next()),
                };
                Date::from_calendar_date(y, m, 1).ok()
            }
            Period::Year => Date::from_calendar_date(first.year() + 1, Month::January, 1).ok(),
        };
        next.unwrap_or(Date::MAX)
    }

    /// The period holding `ms` (Unix milliseconds): `[start, end)`.
    pub fn span(self, ms: u64) -> (u64, u64) {
        let first = self.first(date_of(ms));
        (ms_of(first), ms_of(self.after(first)))
    }

    /// The label of the period holding `ms`.
    pub fn label(self, ms: u64) -> String {
        let d = self.first(date_of(ms));
        match self {
            Period::Day => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
            Period::Month => format!("{:04}-{:02}", d.year(), u8::from(d.month())),
            Period::Year => format!("{:04}", d.year()),
        }
    }

    /// The period a label names, `[start, end)`; `None` for what is not
    /// one of this period's labels (exactly as [`Self::label`] writes them).
    pub fn parse(self, label: &str) -> Option<(u64, u64)> {
        let mut parts = label.split('-');
        let year: i32 = parts.next()?.parse().ok()?;
        let month = match self {
            Period::Year => 1,
            _ => parts.next()?.parse().ok()?,
        };
        let day = match self {
            Period::Day => parts.next()?.parse().ok()?,
            _ => 1,
        };
        if parts.next().is_some() || !(0..=9999).contains(&year) {
            return None;
        }
        let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
        let span = self.span(ms_of(date));
        (self.label(span.0) == label).then_some(span)
    }
}

/// The shard of `family` (of period `period`) that `origin` names, with
/// its period `[start, end)`.
pub fn shard_span(family: &str, period: Period, origin: &str) -> Option<(u64, u64)> {
    let label = origin.strip_prefix(family)?.strip_prefix('/')?;
    period.parse(label)
}

/// How often a server's families are looked at: a shard whose period is
/// over is frozen within this (writes naming the family go to its
/// successor at once, by the clock).
pub const TICK: Duration = Duration::from_secs(1);

/// What one [`Families::tick`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Shards created.
    pub created: Vec<String>,
    /// Shards frozen.
    pub frozen: Vec<String>,
    /// Frozen shards whose entries were dropped.
    pub dropped: Vec<String>,
    /// Frozen shards due to drop their entries that keep them for now,
    /// each with why (its final checkpoint not yet witnessed, say).
    pub kept: Vec<(String, String)>,
}

/// The families of a server, kept rolling over.
pub struct Families<S: Storage> {
    admin: Admin<S>,
    configs: Vec<FamilyConfig>,
    clock: Clock,
}

impl<S: Storage> Families<S> {
    /// The families `families` of the server whose admin domain is
    /// `admin`, timed by `clock`.
    pub fn new(admin: Admin<S>, families: Vec<FamilyConfig>, clock: Clock) -> Self {
        Families {
            admin,
            configs: families,
            clock,
        }
    }

    /// Creates the shards of the current period and the next `ahead` ones
    /// that are not served yet, then freezes every shard whose period is
    /// over once the shard of now is served.
    ///
    /// # Errors
    /// What a creation or a freeze failed on, naming the shard; the
    /// shards done before stay done.
    pub async fn tick(&self) -> Result<Tick, String> {
        let mut done = Tick::default();
        let now = (self.clock)();
        let api = self.admin.api();
        for family in &self.configs {
            let mut at = now;
            for _ in 0..=family.ahead {
                let label = family.period.label(at);
                let origin = family.shard_origin(&label);
                if api.get(&origin).is_none() {
                    let cfg = family.shard_config(&label).map_err(|e| e.to_string())?;
                    self.admin
                        .create_shard(cfg, &family.origin)
                        .await
                        .map_err(|e| format!("creating shard {origin:?}: {e}"))?;
                    done.created.push(origin);
                }
                at = family.period.span(at).1;
            }
            self.drop_due(family, now, &mut done).await;
            let current = family.shard_origin(&family.period.label(now));
            if api.get(&current).is_none() {
                continue;
            }
            for log in api.logs() {
                let ended = shard_span(&family.origin, family.period, log.origin())
                    .is_some_and(|(_, end)| end <= now);
                if ended && log.state().0 == LogState::Active {
                    self.admin
                        .freeze_shard(&log)
                        .await
                        .map_err(|e| format!("freezing shard {:?}: {e}", log.origin()))?;
                    done.frozen.push(log.origin().to_owned());
                }
            }
        }
        Ok(done)
    }

    /// Drops the entries of the frozen shards of `family` whose period
    /// ended `drop_entries_after_days` ago or more.
    async fn drop_due(&self, family: &FamilyConfig, now: u64, done: &mut Tick) {
        let Some(days) = family.drop_entries_after_days else {
            return;
        };
        let after = u64::from(days).saturating_mul(86_400_000);
        for log in self.admin.api().logs() {
            let due = shard_span(&family.origin, family.period, log.origin())
                .is_some_and(|(_, end)| end.saturating_add(after) <= now);
            if !due || log.dropped().is_some() || log.state().0 != LogState::Frozen {
                continue;
            }
            match self.admin.drop_shard_entries(&log, now, days).await {
                Ok(()) => done.dropped.push(log.origin().to_owned()),
                Err(e) => done.kept.push((log.origin().to_owned(), e.to_string())),
            }
        }
    }

    /// Ticks every `every` until `stop` turns true; a failed tick is
    /// logged and tried again (the shard of now, created ahead, keeps
    /// taking writes meanwhile).
    pub async fn run(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        // Why each shard due to drop its entries keeps them, as last said.
        let mut said = std::collections::BTreeMap::<String, String>::new();
        loop {
            match self.tick().await {
                Ok(mut t) => {
                    for (origin, why) in std::mem::take(&mut t.kept) {
                        if said.get(&origin) != Some(&why) {
                            tracing::warn!(origin = %origin, why = %why, "log families: a shard keeps its entries for now");
                            said.insert(origin, why);
                        }
                    }
                    if t != Tick::default() {
                        tracing::info!(created = ?t.created, frozen = ?t.frozen, dropped = ?t.dropped, "log families rolled over");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "log families: a rollover step failed; trying again");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// 2026-12-31T23:59:59.999Z and the millisecond after.
    const LAST_MS: u64 = 1_798_761_599_999;

    #[test]
    fn periods_cover_their_calendar_span_and_labels_round_trip() {
        let cases = [
            (Period::Day, "2026-12-31", "2027-01-01"),
            (Period::Month, "2026-12", "2027-01"),
            (Period::Year, "2026", "2027"),
        ];
        for (p, label, next) in cases {
            assert_eq!(p.label(LAST_MS), label);
            assert_eq!(p.label(LAST_MS + 1), next);
            let (start, end) = p.span(LAST_MS);
            assert_eq!(end, LAST_MS + 1, "{p:?}");
            assert_eq!(p.parse(label), Some((start, end)));
            assert_eq!(p.label(start), label);
            assert_eq!(p.label(start - 1), p.label(start - 1));
            assert_ne!(p.label(start - 1), label);
        }
        // February of a leap year, and a label sorting as its time does.
        let (s, e) = Period::Month.parse("2028-02").unwrap();
        assert_eq!((e - s) / 86_400_000, 29);
        assert!(Period::Month.label(s) < Period::Month.label(e));
        for bad in [
            "2026-13",
            "2026-1",
            "26-12",
            "2026-12-01",
            "x",
            "",
            "2026-00",
            "-2026",
        ] {
            assert_eq!(Period::Month.parse(bad), None, "{bad}");
        }
        assert_eq!(Period::Day.parse("2026-02-30"), None);
        assert_eq!(
            shard_span("a.example/audit", Period::Year, "a.example/audit/2026"),
            Period::Year.parse("2026")
        );
        assert_eq!(
            shard_span("a.example/audit", Period::Year, "a.example/auditx/2026"),
            None
        );
    }
}
