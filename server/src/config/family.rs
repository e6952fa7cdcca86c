//! A log family's configuration (`[[families]]`): the origin its shards
//! share, the period each shard covers, how many are created ahead, and
//! the settings of each shard (`[families.shard]`: the keys of a
//! `[[logs]]` table but `origin`), and how long a frozen shard keeps its
//! entries (`drop_entries_after_days`).

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, LogConfig};
use crate::family::Period;

/// One family of logs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyConfig {
    /// The family's origin: writes and reads may name it; its shards are
    /// `ORIGIN/LABEL` (`acme.example/audit/2026-12` for a month).
    pub origin: String,
    /// The period each shard covers: `day`, `month` or `year` (UTC).
    pub period: Period,
    /// Shards created ahead of the current one (1 to 12).
    #[serde(default = "default_ahead")]
    pub ahead: u32,
    /// Days after a shard's period ends that its entries (and payloads)
    /// are dropped, keeping its tiles, checkpoints and cosignatures
    /// ([`crate::api::LogApi::drop_entries`]); 1 to 36500, at least the
    /// shards' `retention_days`. Unset: kept forever.
    #[serde(default)]
    pub drop_entries_after_days: Option<u32>,
    /// The settings of each shard: any key of a `[[logs]]` table but
    /// `origin`.
    #[serde(default)]
    pub shard: toml::Table,
}

fn default_ahead() -> u32 {
    1
}

impl FamilyConfig {
    /// The origin of the shard labelled `label`.
    pub fn shard_origin(&self, label: &str) -> String {
        format!("{}/{label}", self.origin)
    }

    /// The settings of the shard labelled `label`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for settings that are not a log's.
    pub fn shard_config(&self, label: &str) -> Result<LogConfig, ConfigError> {
        let mut table = self.shard.clone();
        table.insert(
            "origin".into(),
            toml::Value::String(self.shard_origin(label)),
        );
        LogConfig::deserialize(toml::Value::Table(table)).map_err(|e| {
            ConfigError::Invalid(format!("[families.shard] of family {:?}: {e}", self.origin))
        })
    }

    /// Checks the family against the server's configuration.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the value.
    pub fn validate(&self, server: &Config) -> Result<(), ConfigError> {
        if !(1..=12).contains(&self.ahead) {
            return Err(ConfigError::Invalid(format!(
                "family {:?}: ahead = {} must be 1 to 12",
                self.origin, self.ahead
            )));
        }
        if self.shard.contains_key("origin") {
            return Err(ConfigError::Invalid(format!(
                "family {:?}: [families.shard] sets no origin: each shard's is the family's and its period",
                self.origin
            )));
        }
        if let Some(l) = server.logs.iter().find(|l| l.origin == self.origin) {
            return Err(ConfigError::Invalid(format!(
                "{:?} is both a log and a family: a family's origin names its current shard",
                l.origin
            )));
        }
        // A shard of the widest label checks the origin and settings.
        let shard = self.shard_config(&self.period.label(0))?;
        shard.validate(server)?;
        if let Some(days) = self.drop_entries_after_days {
            if !(1..=36_500).contains(&days) {
                return Err(ConfigError::Invalid(format!(
                    "family {:?}: drop_entries_after_days = {days} must be 1 to 36500",
                    self.origin
                )));
            }
            if let Some(kept) = shard.retention_days.filter(|r| *r > u64::from(days)) {
                return Err(ConfigError::Invalid(format!(
                    "family {:?}: drop_entries_after_days = {days} is less than the shards' retention_days = {kept}: entries are dropped after their payloads' retention, not before",
                    self.origin
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::config::tests::load;

    #[test]
    fn families_are_checked_with_their_shards_settings() {
        let c = load(
            "[[families]]\norigin = \"a.example/audit\"\nperiod = \"month\"\nahead = 2\n[families.shard]\nmax_batch = 7\n",
        )
        .unwrap();
        let f = &c.families[0];
        assert_eq!((f.ahead, f.period), (2, crate::family::Period::Month));
        assert_eq!(f.drop_entries_after_days, None, "kept forever unless set");
        let kept = load(
            "[[families]]\norigin = \"a.example/audit\"\nperiod = \"day\"\ndrop_entries_after_days = 90\n[families.shard]\nevents = true\nretention_days = 90\n",
        )
        .unwrap();
        assert_eq!(kept.families[0].drop_entries_after_days, Some(90));
        let shard = f.shard_config("2026-12").unwrap();
        assert_eq!(
            (shard.origin.as_str(), shard.max_batch),
            ("a.example/audit/2026-12", 7)
        );
        for (text, says) in [
            ("period = \"week\"", "unknown variant `week`"),
            ("period = \"day\"\nahead = 0", "ahead = 0 must be 1 to 12"),
            (
                "period = \"day\"\n[families.shard]\norigin = \"x\"",
                "sets no origin",
            ),
            (
                "period = \"day\"\n[families.shard]\nmax_batch = 0",
                "max_batch must be 1 to 100000",
            ),
            (
                "period = \"day\"\n[families.shard]\nnot_a_key = 1",
                "unknown field `not_a_key`",
            ),
            (
                "period = \"day\"\ndrop_entries_after_days = 0",
                "drop_entries_after_days = 0 must be 1 to 36500",
            ),
            (
                "period = \"day\"\ndrop_entries_after_days = 30\n[families.shard]\nevents = true\nretention_days = 90",
                "drop_entries_after_days = 30 is less than the shards' retention_days = 90",
            ),
        ] {
            let e = load(&format!(
                "[[families]]\norigin = \"a.example/audit\"\n{text}\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        let e = load("[[logs]]\norigin = \"a.example/audit\"\n[[families]]\norigin = \"a.example/audit\"\nperiod = \"day\"\n").unwrap_err();
        assert!(e.to_string().contains("is both a log and a family"), "{e}");
    }
}
