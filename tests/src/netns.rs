//! Tests that cut network paths run in a network namespace of their own
//! (`unshare --net`, which needs root, as the project's other service tests
//! do to install packages): the test re-runs itself inside one, where it
//! starts everything it needs on that namespace's loopback and cuts paths
//! with `scripts/partition` (nftables). Nothing it does reaches the
//! machine's own network, so the packages it needs (nftables, PostgreSQL)
//! are installed before it enters the namespace.
//!
//! Never a skip: a namespace that cannot be made fails the test, naming
//! why.

use std::process::Command;

use crate::postgres::script;

/// Set in the re-run test: it is inside its namespace.
const INSIDE: &str = "QUIRE_TEST_NETNS";

/// Whether this process runs test `name` inside its own namespace (with
/// its loopback up): true there. Outside, runs `name` again inside a new
/// namespace, fails when it fails (with what it printed), and returns
/// false: the caller returns at once.
///
/// # Panics
/// When the namespace cannot be made, or the test failed inside it.
pub fn inside(name: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        if let Err(e) = script("partition", &[], &["up"]) {
            panic!("bringing the namespace's loopback up: {e}");
        }
        return true;
    }
    // What the namespace needs is installed here, outside it: inside there
    // is no network to fetch a package with.
    for (name, what) in [("partition", "nftables"), ("postgres", "PostgreSQL")] {
        if let Err(e) = script(name, &[], &["install"]) {
            panic!("installing {what} before entering the namespace: {e}");
        }
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("this test's path: {e}"));
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .unwrap_or_else(|e| panic!("running unshare: {e}"));
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{name} inside a network namespace of its own (unshare --net, as root): {}\n{said}",
        out.status
    );
    // The test ran (not filtered away): one passed, inside.
    assert!(
        said.contains("1 passed; 0 failed"),
        "{name} did not run inside its namespace:\n{said}"
    );
    false
}

/// Cuts every packet to and from `addr:port` (`scripts/partition cut`).
///
/// # Errors
/// The script's words.
pub fn cut(addr: &str, port: u16) -> Result<(), String> {
    script("partition", &[], &["cut", addr, &port.to_string()]).map(drop)
}

/// Lets every packet through again (`scripts/partition heal`).
///
/// # Errors
/// The script's words.
pub fn heal() -> Result<(), String> {
    script("partition", &[], &["heal"]).map(drop)
}
