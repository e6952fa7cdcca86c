//! Quotas: rates of entries written and of requests, per principal, per
//! log or per scope, held by GCRA rate limiters (the `governor` crate).
//!
//! A quota of the policy names whom it limits (`who`, default everyone),
//! on which logs (`logs`/`tenants`, default all), what (`entries_per_s`,
//! `requests_per_s`; fractions allowed), how deep its bucket is (`burst`,
//! default one second of the rate, at least 1) and how its buckets are
//! shared (`per`): `principal` (the default: each principal one bucket over
//! the quota's logs; anonymous callers one per IP address), `principal-log`
//! (each principal one per log), `log` (one per log, shared by everyone the
//! quota names) or `all` (one for the whole quota). A request passes every
//! quota that names its caller and log, or is refused with
//! `RESOURCE_EXHAUSTED` and the time after which it would conform.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota as Rate};
use serde::Deserialize;

use super::policy::{scope, Origins, Tenants};
use super::principal::{Principal, Who};

/// Keys held by one limiter before idle ones are dropped.
pub(crate) const MAX_KEYS: usize = 65_536;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaFile {
    #[serde(default)]
    who: Option<String>,
    #[serde(default)]
    logs: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default)]
    entries_per_s: Option<f64>,
    #[serde(default)]
    requests_per_s: Option<f64>,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    per: Per,
}

/// How a quota's buckets are shared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Per {
    #[default]
    Principal,
    PrincipalLog,
    Log,
    All,
}

/// One checked quota with its limiters.
pub(crate) struct Quota {
    n: usize,
    who: Option<Who>,
    scope: Option<Vec<Origins>>,
    per: Per,
    entries: Option<(DefaultKeyedRateLimiter<String>, f64)>,
    requests: Option<(DefaultKeyedRateLimiter<String>, f64)>,
}

fn limiter(
    rate: f64,
    burst: Option<u32>,
    what: &str,
) -> Result<DefaultKeyedRateLimiter<String>, String> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 1e9) {
        return Err(format!("{what} = {rate} must be above 0 and at most 1e9"));
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // rate ≤ 1e9
    let depth = burst.unwrap_or(rate.ceil() as u32).max(1);
    let depth = NonZeroU32::new(depth).ok_or("burst must be at least 1")?;
    let rate = Rate::with_period(period)
        .ok_or_else(|| format!("{what} = {rate} is too high"))?
        .allow_burst(depth);
    Ok(DefaultKeyedRateLimiter::keyed(rate))
}

impl Quota {
    /// Checks quota `n` (1-based) of the file, its tenants among
    /// `tenants`.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub(crate) fn check(n: usize, file: &QuotaFile, tenants: &Tenants) -> Result<Self, String> {
        let at = |e: String| format!("quota {n}: {e}");
        let who = file
            .who
            .as_deref()
            .map(Who::parse)
            .transpose()
            .map_err(at)?;
        let scope = scope(&file.logs, &file.tenants, tenants).map_err(at)?;
        let entries = file
            .entries_per_s
            .map(|r| limiter(r, file.burst, "entries_per_s").map(|l| (l, r)))
            .transpose()
            .map_err(at)?;
        let requests = file
            .requests_per_s
            .map(|r| limiter(r, file.burst, "requests_per_s").map(|l| (l, r)))
            .transpose()
            .map_err(at)?;
        if entries.is_none() && requests.is_none() {
            return Err(at(
                "it limits nothing: set entries_per_s and/or requests_per_s".into(),
            ));
        }
        Ok(Quota {
            n,
            who,
            scope: (!scope.is_empty()).then_some(scope),
            per: file.per,
            entries,
            requests,
        })
    }

    /// Whether this quota names `principal` on `origin`.
    fn covers(&self, principal: &Principal, origin: &str) -> bool {
        self.who.as_ref().is_none_or(|w| principal.is(w))
            && self
                .scope
                .as_ref()
                .is_none_or(|s| s.iter().any(|o| o.covers(origin)))
    }

    /// Takes `entries` (writes) and one request from the buckets of
    /// `caller` on `origin`.
    ///
    /// # Errors
    /// The refusal in words, with how long until it would conform (`None`:
    /// never, the batch is larger than the bucket).
    pub(crate) fn admit(
        &self,
        principal: &Principal,
        caller_key: &str,
        origin: &str,
        entries: u64,
    ) -> Result<(), (String, Option<Duration>)> {
        if !self.covers(principal, origin) {
            return Ok(());
        }
        let key = match self.per {
            Per::Principal => caller_key.to_owned(),
            Per::PrincipalLog => format!("{caller_key}\n{origin}"),
            Per::Log => origin.to_owned(),
            Per::All => String::new(),
        };
        let whose = match self.per {
            Per::Principal | Per::PrincipalLog => format!("{principal}"),
            Per::Log | Per::All => "everyone it names".to_owned(),
        };
        let take = |l: &(DefaultKeyedRateLimiter<String>, f64), n: u64, what: &str| {
            let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
                return if n == 0 {
                    Ok(())
                } else {
                    Err((
                        format!("{n} {what} are over quota {}'s bucket", self.n),
                        None,
                    ))
                };
            };
            match l.0.check_key_n(&key, n) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(l.0.clock().now());
                    Err((
                        format!(
                            "quota {} of the access policy holds {whose} to {} {what} per second on log {origin:?}; retry in {} ms",
                            self.n,
                            l.1,
                            wait.as_millis().max(1)
                        ),
                        Some(wait),
                    ))
                }
                Err(_) => Err((
                    format!(
                        "a batch of {n} {what} is more than quota {}'s bucket holds: send smaller batches",
                        self.n
                    ),
                    None,
                )),
            }
        };
        if let Some(l) = &self.requests {
            take(l, 1, "requests")?;
        }
        if let Some(l) = &self.entries {
            take(l, entries, "entries")?;
        }
        Ok(())
    }

    /// Drops the buckets of keys idle long enough to be full again, once a
    /// limiter holds more than [`MAX_KEYS`].
    pub(crate) fn trim(&self) {
        for (l, _) in self.entries.iter().chain(self.requests.iter()) {
            if l.len() > MAX_KEYS {
                l.retain_recent();
            }
        }
    }
}
