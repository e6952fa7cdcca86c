//! The logs created through the admin service, kept beside the data they
//! describe: `created-logs.toml` in the data directory, in the layout of
//! the configuration's `[[logs]]` tables (so a log can be moved into the
//! configuration file by copying its table). The file is replaced whole
//! and synced on every change; a server serves its logs after the
//! configured ones at every start.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::LogConfig;

/// The catalog's file name in the data directory.
pub const FILE: &str = "created-logs.toml";

/// Largest catalog read, checked by bytes read before parsing.
pub const MAX_CATALOG_BYTES: u64 = 4 << 20;

#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    logs: Vec<LogConfig>,
}

/// Parses `bytes` as a catalog read from `path` (named in errors).
///
/// # Errors
/// Not UTF-8, or not the catalog's TOML.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Vec<LogConfig>, String> {
    if bytes.len() as u64 > MAX_CATALOG_BYTES {
        return Err(format!(
            "{}: {} bytes; the limit is {MAX_CATALOG_BYTES}",
            path.display(),
            bytes.len()
        ));
    }
    let file: CatalogFile = std::str::from_utf8(bytes)
        .map_err(|_| format!("{}: not UTF-8 text", path.display()))
        .and_then(|t| toml::from_str(t).map_err(|e| format!("{}: {e}", path.display())))?;
    Ok(file.logs)
}

/// The catalog of one data directory.
#[derive(Clone, Debug)]
pub struct Catalog {
    path: PathBuf,
}

impl Catalog {
    /// The catalog of `data_dir`.
    pub fn of(data_dir: &Path) -> Self {
        Catalog {
            path: data_dir.join(FILE),
        }
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The logs it holds (none when the file does not exist).
    ///
    /// # Errors
    /// A file that cannot be read, is over [`MAX_CATALOG_BYTES`] or does
    /// not parse, naming it.
    pub fn read(&self) -> Result<Vec<LogConfig>, String> {
        let bytes = match quire_host::read_bounded(&self.path, MAX_CATALOG_BYTES) {
            Ok(b) => b,
            // No data directory yet (or no directory there: the start
            // names that when it creates one).
            Err(quire_host::ReadError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e.to_string()),
        };
        parse(&bytes, &self.path)
    }

    /// Adds `log` to the file, replacing it whole.
    ///
    /// # Errors
    /// As [`Self::read`]; a log of that origin in it already; I/O.
    pub fn add(&self, log: &LogConfig) -> Result<(), String> {
        let mut logs = self.read()?;
        if logs.iter().any(|l| l.origin == log.origin) {
            return Err(format!(
                "{} holds log {:?} already",
                self.path.display(),
                log.origin
            ));
        }
        logs.push(log.clone());
        let text = toml::to_string(&CatalogFile { logs })
            .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
        let text = format!(
            "# Logs created through the admin service (quire admin create).\n\
             # Replaced whole by the server: to change a log, move its table into\n\
             # the configuration file's [[logs]] and remove it here.\n\n{text}"
        );
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        quire_host::write_replacing(&self.path, text.as_bytes())
            .map_err(|e| format!("writing {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn logs_added_are_read_back_with_their_settings() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::of(dir.path());
        assert!(c.read().unwrap().is_empty());
        let mut a = LogConfig::new("a.example/2026-12");
        a.max_batch = 77;
        a.storage.compress = false;
        c.add(&a).unwrap();
        c.add(&LogConfig::new("a.example/2027-01")).unwrap();
        let e = c.add(&a).unwrap_err();
        assert!(e.contains("holds log \"a.example/2026-12\" already"), "{e}");
        let logs = c.read().unwrap();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].origin, "a.example/2026-12");
        assert_eq!(logs[0].max_batch, 77);
        assert!(!logs[0].storage.compress);
        assert_eq!(logs[1].origin, "a.example/2027-01");
    }

    #[test]
    fn a_damaged_catalog_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::of(dir.path());
        std::fs::write(c.path(), "[[logs]]\norigin = 5\n").unwrap();
        let e = c.read().unwrap_err();
        assert!(e.contains(FILE), "{e}");
        std::fs::write(
            c.path(),
            vec![b'#'; usize::try_from(MAX_CATALOG_BYTES + 1).unwrap()],
        )
        .unwrap();
        assert!(c.read().is_err());
    }
}
