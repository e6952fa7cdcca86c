//! What the tests of a log on PostgreSQL share: the shared server's
//! databases, a log configured on one, servers started on it, and the
//! `quire` and `quire-server migrate` commands.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use quire_server::config::{Config, Engine, LogConfig};
use quire_server::local::LocalServer;
use quire_tests::postgres;
use quire_tests::run_bin;

pub fn pg_log(origin: &str, db: &str) -> LogConfig {
    let mut cfg = LogConfig::new(origin);
    cfg.storage.engine = Engine::Postgres;
    cfg.storage.url = Some(postgres::shared().url_of(db));
    cfg
}

pub fn entries(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("{{\"actor\":\"user{i}\",\"action\":\"login\"}}").into_bytes())
        .collect()
}

pub fn quire(args: &[&str]) -> String {
    let (code, out, err) = run_bin("quire", args);
    assert_eq!(code, 0, "quire {args:?}: {out}{err}");
    out
}

/// A server for one log on PostgreSQL database `db`, its files in `data`.
pub async fn start(
    data: &Path,
    origin: &str,
    db: &str,
    config: Config,
) -> anyhow::Result<LocalServer> {
    LocalServer::start(data, vec![pg_log(origin, db)], config).await
}

/// The shared server, a new database named from `prefix`, a temporary
/// directory and the server's data directory in it.
pub fn setup(
    prefix: &str,
) -> (
    &'static postgres::Postgres,
    String,
    tempfile::TempDir,
    PathBuf,
) {
    let pg = postgres::shared();
    let db = pg.create_database(prefix).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    (pg, db, dir, data)
}

/// `quire ARGS --addr URL --log-key KEY`, which must succeed.
pub fn quire_on(url: &str, key: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--addr", url, "--log-key", key]);
    quire(&all)
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The arguments of `quire-server migrate` that name log `origin` on
/// redb: its data directory `data` and high-water directory `hw`.
pub fn redb_args<'a>(data: &'a Path, hw: &'a Path, origin: &'a str) -> [&'a str; 6] {
    [
        "--data-dir",
        path(data),
        "--high-water-dir",
        path(hw),
        "--origin",
        origin,
    ]
}

/// `quire-server migrate ARGS`: exit code and all it printed.
pub fn migrate(args: &[&str]) -> (i32, String) {
    let mut all = vec!["migrate"];
    all.extend(args);
    let (code, out, err) = run_bin("quire-server", &all);
    (code, format!("{out}{err}"))
}

/// A configuration file in `dir` for the server of `data` with one log
/// `origin` on PostgreSQL at `url`, with the `[[logs]]` lines `extra`.
pub fn pg_config(dir: &Path, data: &Path, origin: &str, extra: &str, url: &str) -> PathBuf {
    let (d, hw) = (path(data), data.join("high-water"));
    let hw = path(&hw);
    let config = dir.join("pg.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {d:?}\nhigh_water_dir = {hw:?}\n[[logs]]\norigin = {origin:?}\n{extra}[logs.storage]\nengine = \"postgres\"\nurl = {url:?}\n"
        ),
    )
    .unwrap();
    config
}
