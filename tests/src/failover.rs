//! A PostgreSQL formation with automatic failover (`pg_auto_failover`'s
//! monitor and three data nodes), started through the project's own
//! `scripts/pg-auto-failover` on free loopback ports (which installs the
//! Debian packages when absent) and removed by that script once the test
//! process has ended.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::postgres::{free_ports, psql, script};

/// Data nodes in the formation.
pub const NODES: u32 = 3;
/// Loopback ports it takes: the monitor's and one a node.
const PORTS: u16 = 4;
/// The candidate priority `pg_auto_failover` gives a node it may promote.
pub const DEFAULT_PRIORITY: u32 = 50;
/// Lines of each keeper's log a failure's report shows.
const KEEPER_LOG_LINES: usize = 40;
/// Bytes read from the end of a keeper's log for them, whatever its size.
const KEEPER_LOG_TAIL_BYTES: u64 = 64 * 1024;

/// A started formation.
pub struct AutoFailover {
    /// Every data node, with `target_session_attrs=read-write`.
    pub url: String,
    dir: PathBuf,
    port: u16,
}

impl AutoFailover {
    /// Starts one; each call a new formation.
    ///
    /// # Errors
    /// The script's own words when it cannot start one.
    pub fn start() -> Result<AutoFailover, String> {
        let mut why = Vec::new();
        for attempt in 0..3 {
            let port = free_ports(PORTS)?;
            let dir = std::env::temp_dir()
                .join(format!("quire-paf-{}-{port}-{attempt}", std::process::id()));
            let owner = std::process::id().to_string();
            let port_text = port.to_string();
            match script(
                "pg-auto-failover",
                &[
                    ("PAF_DIR", dir.as_os_str()),
                    ("PAF_PORT", port_text.as_ref()),
                    ("PG_OWNER", owner.as_ref()),
                ],
                &["start"],
            ) {
                Ok(out) => {
                    if let Some(url) = out.lines().find_map(|l| l.strip_prefix("url ")) {
                        return Ok(AutoFailover {
                            url: url.to_owned(),
                            dir,
                            port,
                        });
                    }
                    why.push(format!("port {port}: no url in {out:?}"));
                }
                Err(e) => why.push(format!("port {port}: {e}")),
            }
        }
        Err(why.join("; "))
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let port = self.port.to_string();
        script(
            "pg-auto-failover",
            &[
                ("PAF_DIR", self.dir.as_os_str()),
                ("PAF_PORT", port.as_ref()),
            ],
            args,
        )
    }

    /// SIGKILLs node `n`'s keeper and PostgreSQL: its machine is lost.
    ///
    /// # Errors
    /// The script's words.
    pub fn kill_node(&self, n: u32) -> Result<(), String> {
        self.run(&["kill-node", &n.to_string()]).map(drop)
    }

    /// SIGKILLs node `n`'s PostgreSQL alone; its keeper restarts it.
    ///
    /// # Errors
    /// The script's words.
    pub fn kill_postgres(&self, n: u32) -> Result<(), String> {
        self.run(&["kill-postgres", &n.to_string()]).map(drop)
    }

    /// Sets node `n`'s candidate priority: 0, it is never promoted;
    /// `pg_auto_failover`'s default is [`DEFAULT_PRIORITY`].
    ///
    /// # Errors
    /// The script's words.
    pub fn candidate_priority(&self, n: u32, priority: u32) -> Result<(), String> {
        self.run(&["candidate-priority", &n.to_string(), &priority.to_string()])
            .map(drop)
    }

    /// Runs node `n`'s keeper again; it rejoins as a standby.
    ///
    /// # Errors
    /// The script's words.
    pub fn start_node(&self, n: u32) -> Result<(), String> {
        self.run(&["start-node", &n.to_string()]).map(drop)
    }

    /// The node the monitor made primary and that reports it, if any.
    pub fn primary(&self) -> Option<u32> {
        self.run(&["primary"]).ok()?.trim().parse().ok()
    }

    /// What `pg_autoctl show state` prints, for a failure's report, and
    /// the last lines of each data node's keeper log (what a node stuck
    /// in a state was doing).
    pub fn state(&self) -> String {
        let mut out = self.run(&["state"]).unwrap_or_else(|e| e);
        for n in 1..=NODES {
            let log = self.dir.join(format!("node{n}.log"));
            let tail = tail_lines(&log, KEEPER_LOG_LINES)
                .unwrap_or_else(|e| format!("{}: {e}", log.display()));
            let _ = write!(out, "\n--- node{n}'s keeper, last lines ---\n{tail}\n");
        }
        out
    }

    /// Waits (bounded by `patience`) for a primary other than `not`.
    ///
    /// # Errors
    /// The formation's state when none came.
    pub fn wait_primary(&self, not: Option<u32>, patience: Duration) -> Result<u32, String> {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Some(p) = self.primary().filter(|p| Some(*p) != not) {
                return Ok(p);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("no primary but {not:?}:\n{}", self.state()))
    }

    /// Waits (bounded by `patience`) until node `n` reports one of
    /// `states` to the monitor.
    ///
    /// # Errors
    /// The formation's state when it does not.
    pub fn wait_reported(&self, n: u32, states: &[&str], patience: Duration) -> Result<(), String> {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            let state = self
                .run(&["node-state", &n.to_string()])
                .unwrap_or_default();
            if states.contains(&state.trim()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "node {n} does not report {states:?}:\n{}",
            self.state()
        ))
    }

    /// Waits (bounded) until node `n` streams as a standby of the primary.
    ///
    /// # Errors
    /// The formation's state when it does not.
    pub fn wait_standby(&self, n: u32, patience: Duration) -> Result<(), String> {
        let deadline = Instant::now() + patience;
        let q = format!(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE application_name = 'pgautofailover_standby_{n}' AND state = 'streaming'"
        );
        while Instant::now() < deadline {
            if psql(&self.url, &q).ok().as_deref() == Some("1") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("node {n} does not stream:\n{}", self.state()))
    }

    /// A new, empty database (its name made unique from `prefix`); its
    /// URL on every node (read-write).
    ///
    /// # Errors
    /// `psql`'s words.
    pub fn create_database(&self, prefix: &str) -> Result<String, String> {
        let name = crate::postgres::unique(prefix).replace(['-', '.', '/'], "_");
        psql(&self.url, &format!("CREATE DATABASE {name}"))?;
        Ok(crate::postgres::with_database(&self.url, &name))
    }
}

/// The last `n` lines of the file at `path`, read from at most its last
/// [`KEEPER_LOG_TAIL_BYTES`] (a line cut there is shown cut).
fn tail_lines(path: &std::path::Path, n: usize) -> std::io::Result<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(len.saturating_sub(KEEPER_LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    f.take(KEEPER_LOG_TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(n)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::{tail_lines, KEEPER_LOG_TAIL_BYTES};

    #[test]
    fn a_log_tail_is_its_last_lines_read_from_its_end_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node1.log");
        // Longer than the bytes read: the first lines are never read.
        let lines: Vec<String> = (0..10_000)
            .map(|i| format!("line {i:05} of the keeper"))
            .collect();
        let text = lines.join("\n") + "\n";
        assert!(text.len() as u64 > 2 * KEEPER_LOG_TAIL_BYTES);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(tail_lines(&path, 3).unwrap(), lines[9_997..].join("\n"));
        // A short file gives what it has.
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(tail_lines(&path, 40).unwrap(), "one\ntwo");
        // A missing file is an error, not an empty tail.
        assert!(tail_lines(&dir.path().join("absent.log"), 3).is_err());
    }
}
