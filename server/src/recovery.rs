//! The binary's offline subcommands: `import` (recovery from an entries
//! dump), `fsck` (a full check of a log's storage) and `migrate` (a log
//! moved between engines), each on the engine the log's configuration
//! names. Exit codes follow the
//! `quire` CLI: 0 success, 1 verification failed or damage found, 2 bad
//! input (arguments, configuration, files), 3 storage unavailable.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use quire_server::config::{Config, LogConfig};
use quire_server::highwater::HighWater;
use quire_server::import::ImportError;
use quire_server::keyfile;
use quire_server::migrate::MigrateError;
use quire_server::store::any::AnyStore;
use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::redb::RedbStore;
use quire_server::store::StoreError;

use super::StoreArgs;

/// Largest checkpoint file read (a signed note's limit).
const MAX_NOTE_BYTES: u64 = 64 * 1024;

#[derive(clap::Args, Clone)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The log to import into, when the configuration has several.
    #[arg(long)]
    log: Option<String>,
    /// The entries dump: one base64 line per entry (`quire entries --out`),
    /// or `-` for standard input.
    #[arg(long)]
    entries: PathBuf,
    /// Index of the dump's first entry.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// A checkpoint the log signed (`quire entries --checkpoint-out`, a
    /// monitor's or witness's copy, or the high-water record's note): the
    /// database is brought to exactly its size and root.
    #[arg(long)]
    checkpoint: PathBuf,
}

/// The engines a log can be moved to.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EngineArg {
    /// The embedded default: `DATA_DIR/logs/<log>.redb`.
    Redb,
    /// A PostgreSQL database (`--url`).
    Postgres,
}

#[derive(clap::Args, Clone)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The log to move, when the configuration has several.
    #[arg(long)]
    log: Option<String>,
    /// The engine to move it to; the source is where its configuration
    /// says it is now.
    #[arg(long, value_enum)]
    to: EngineArg,
    /// The target database (`--to postgres`): a libpq URL.
    #[arg(long, required_if_eq("to", "postgres"))]
    url: Option<String>,
}

#[derive(clap::Args, Clone)]
pub(crate) struct FsckArgs {
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Args, Clone)]
pub(crate) struct ReindexArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only compare the stored index with the rebuilt one.
    #[arg(long)]
    check: bool,
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("quire-server: {message}");
    ExitCode::from(code)
}

/// Prints `done of total` to stderr at most once a second, on a terminal.
fn progress(what: &'static str) -> impl FnMut(u64, u64) {
    let tty = std::io::stderr().is_terminal();
    let mut last = Instant::now();
    move |done, total| {
        if tty && (last.elapsed() >= Duration::from_secs(1) || done == total) {
            last = Instant::now();
            eprint!("\r{what}: {done} of {total} entries");
            if done == total {
                eprintln!();
            }
        }
    }
}

/// The configuration and the one log chosen.
fn select(store: &StoreArgs, log: Option<&str>) -> Result<(Config, LogConfig), String> {
    let config = store
        .config()
        .map_err(|e| quire_host::error::Report(e.as_ref()).to_string())?;
    let chosen = match log {
        Some(o) => config.logs.iter().find(|l| l.origin == o),
        None if config.logs.len() == 1 => config.logs.first(),
        None => {
            return Err(format!(
                "the configuration has {} logs: name one with --log",
                config.logs.len()
            ))
        }
    };
    let Some(cfg) = chosen.cloned() else {
        return Err(format!("no log {log:?} in the configuration"));
    };
    Ok((config, cfg))
}

/// The log's files: its database path and high-water record.
fn files(config: &Config, cfg: &LogConfig) -> Result<(PathBuf, HighWater), String> {
    let hw_dir = config.high_water_dir().map_err(|e| e.to_string())?;
    Ok((
        quire_server::open::redb_path(&config.data_dir, &cfg.origin),
        HighWater::at(quire_server::open::high_water_path(&hw_dir, &cfg.origin)),
    ))
}

/// The log's storage on the engine its configuration names: its redb file
/// at `path` (created when `create`), or its PostgreSQL database.
fn open_store(cfg: &LogConfig, path: &Path, create: bool) -> Result<AnyStore, (u8, String)> {
    if let Some(opts) = cfg.pg_options() {
        return open_pg(&opts, &cfg.origin, create);
    }
    if !create && !path.is_file() {
        return Err((
            2,
            format!("log {}: no database at {}", cfg.origin, path.display()),
        ));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| (3, format!("creating {}: {e}", dir.display())))?;
    }
    RedbStore::open(path, cfg.store_options())
        .map(AnyStore::from)
        .map_err(|e| (3, format!("opening {}: {e}", path.display())))
}

fn open_pg(opts: &PgOptions, origin: &str, create: bool) -> Result<AnyStore, (u8, String)> {
    let create = if create { Create::Yes } else { Create::No };
    PgStore::open(opts, origin, create)
        .map(AnyStore::from)
        .map_err(|e| {
            let code = if matches!(e, StoreError::Missing(_)) {
                2
            } else {
                3
            };
            (
                code,
                format!(
                    "log {origin}: PostgreSQL: {}",
                    quire_host::error::Report(&e)
                ),
            )
        })
}

/// The log's keys (never new ones) and its primary verifier key.
fn log_keys(config: &Config, cfg: &LogConfig) -> Result<Vec<quire_core::LogSigner>, String> {
    let signers = keyfile::load_or_create(&config.data_dir.join("keys"), &cfg.origin, false)
        .map_err(|e| quire_host::error::Report(e.as_ref()).to_string())?
        .0;
    if signers.is_empty() {
        return Err("the log has no key".into());
    }
    Ok(signers)
}

pub(crate) fn migrate(args: &MigrateArgs) -> ExitCode {
    let (config, cfg) = match select(&args.store, args.log.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(2, &e),
    };
    let (path, _) = match files(&config, &cfg) {
        Ok(f) => f,
        Err(e) => return fail(2, &e),
    };
    let signers = match log_keys(&config, &cfg) {
        Ok(s) => s,
        Err(e) => return fail(2, &e),
    };
    let from_pg = cfg.pg_options().is_some();
    if from_pg == (args.to == EngineArg::Postgres) {
        return fail(
            2,
            &format!(
                "log {} is on {} already: --to names the engine to move it to",
                cfg.origin,
                if from_pg { "postgres" } else { "redb" }
            ),
        );
    }
    let source = match open_store(&cfg, &path, false) {
        Ok(s) => s,
        Err((code, e)) => return fail(code, &e),
    };
    let target = match (args.to, &args.url) {
        (EngineArg::Postgres, Some(url)) => {
            let mut opts = PgOptions::new(url.clone());
            opts.compress = cfg.storage.compress;
            open_pg(&opts, &cfg.origin, true)
        }
        (EngineArg::Postgres, None) => Err((2, "--to postgres needs --url".into())),
        (EngineArg::Redb, _) => {
            let mut redb = cfg.clone();
            redb.storage.engine = quire_server::config::Engine::Redb;
            redb.storage.url = None;
            open_store(&redb, &path, true)
        }
    };
    let target = match target {
        Ok(t) => t,
        Err((code, e)) => return fail(code, &e),
    };
    let key = signers[0].verifier();
    match quire_server::migrate::migrate(&source, &target, &cfg.origin, &key, progress("copied")) {
        Ok(r) => {
            let setting = match (args.to, &args.url) {
                (EngineArg::Postgres, Some(url)) => {
                    format!("engine = \"postgres\" and url = {url:?}")
                }
                _ => "engine = \"redb\" (or remove the table)".into(),
            };
            println!(
                "log {}: moved from {} to {}: entries {}..{} and {} signed checkpoints copied and verified, nothing signed. Set [logs.storage] {setting} for this log before starting the server.",
                cfg.origin,
                source.engine(),
                target.engine(),
                r.from,
                r.to,
                r.checkpoints
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = match &e {
                MigrateError::Source(_) | MigrateError::Target(_) => 1,
                MigrateError::Store(_) => 3,
            };
            fail(code, &format!("migrate: {}", quire_host::error::Report(&e)))
        }
    }
}

pub(crate) fn import(args: &ImportArgs) -> ExitCode {
    let (config, cfg) = match select(&args.store, args.log.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(2, &e),
    };
    let (path, high_water) = match files(&config, &cfg) {
        Ok(f) => f,
        Err(e) => return fail(2, &e),
    };
    // The log's own keys, never new ones: the checkpoint must be theirs.
    let signers = match log_keys(&config, &cfg) {
        Ok(s) => s,
        Err(e) => return fail(2, &e),
    };
    let primary = &signers[0];
    let note = match quire_host::read_bounded(&args.checkpoint, MAX_NOTE_BYTES) {
        Ok(n) => n,
        Err(e) => return fail(2, &e.to_string()),
    };
    let dump: Box<dyn std::io::BufRead> = if args.entries == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        match quire_host::open_regular(&args.entries, false) {
            Ok(f) => Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
            Err(e) => return fail(2, &e.to_string()),
        }
    };
    let store = match open_store(&cfg, &path, true) {
        Ok(s) => s,
        Err((code, e)) => return fail(code, &e),
    };
    let result = quire_server::import::import(
        &store,
        &cfg.origin,
        primary,
        &high_water,
        &note,
        quire_server::import::Dump {
            lines: dump,
            start: args.start,
        },
        progress("imported"),
    );
    match result {
        Ok(r) => {
            println!(
                "log {}: imported entries {}..{}; the database now holds the signed checkpoint of size {} (nothing was signed), recorded in {}",
                cfg.origin,
                r.from,
                r.to,
                r.to,
                high_water.path().display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = match &e {
                ImportError::Mismatch(_) => 1,
                ImportError::Checkpoint(_) | ImportError::Dump(_) => 2,
                ImportError::Store(_) | ImportError::HighWater(_) => 3,
            };
            fail(
                code,
                &format!("import into {} storage: {e}", store.engine()),
            )
        }
    }
}

pub(crate) fn fsck(args: &FsckArgs) -> ExitCode {
    let config = match args.store.config() {
        Ok(c) => c,
        Err(e) => return fail(2, &quire_host::error::Report(e.as_ref()).to_string()),
    };
    let mut damaged = false;
    for cfg in &config.logs {
        let (path, high_water) = match files(&config, cfg) {
            Ok(f) => f,
            Err(e) => return fail(2, &e),
        };
        let keys = match log_keys(&config, cfg) {
            Ok(s) => s
                .iter()
                .map(quire_core::LogSigner::verifier)
                .collect::<Vec<_>>(),
            Err(e) => return fail(2, &e),
        };
        let store = match open_store(cfg, &path, false) {
            Ok(s) => s,
            Err((2, e)) => return fail(2, &e),
            Err((_, e)) => {
                println!("log {}: DAMAGED: cannot be opened: {e}", cfg.origin);
                damaged = true;
                continue;
            }
        };
        let place = match store.as_redb() {
            Some(_) => path.display().to_string(),
            None => "its PostgreSQL database".to_owned(),
        };
        let report = match quire_server::fsck::fsck(
            &store,
            &cfg.origin,
            &keys,
            &high_water,
            progress("checked"),
        ) {
            Ok(r) => r,
            Err(e) => {
                println!("log {}: DAMAGED: {place} cannot be read: {e}", cfg.origin);
                damaged = true;
                continue;
            }
        };
        if report.clean() {
            let dropped = report.dropped.map_or_else(String::new, |d| {
                format!(
                    " (its entries were dropped at {} ms: the tree is rebuilt from its stored leaf hashes)",
                    d.at_ms
                )
            });
            println!(
                "log {}: OK: size {}, {} entries hashed, {} stored hashes and {} checkpoints checked, high-water record agrees{dropped}",
                cfg.origin, report.size, report.entries, report.hashes, report.checkpoints
            );
        } else {
            damaged = true;
            println!(
                "log {}: DAMAGED: {} problems in {place} (size {}):",
                cfg.origin, report.problem_count, report.size
            );
            for p in &report.problems {
                println!("  {p}");
            }
            if report.problem_count > report.problems.len() as u64 {
                println!(
                    "  … and {} more",
                    report.problem_count - report.problems.len() as u64
                );
            }
        }
    }
    if damaged {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `quire-server compact`: each configured log on redb, its file compacted
/// (redb's compaction moves live pages down and truncates the file).
pub(crate) fn compact(args: &FsckArgs) -> ExitCode {
    let config = match args.store.config() {
        Ok(c) => c,
        Err(e) => return fail(2, &quire_host::error::Report(e.as_ref()).to_string()),
    };
    for cfg in &config.logs {
        if cfg.pg_options().is_some() {
            println!(
                "log {}: on PostgreSQL: run VACUUM (FULL) there instead",
                cfg.origin
            );
            continue;
        }
        let (path, _) = match files(&config, cfg) {
            Ok(f) => f,
            Err(e) => return fail(2, &e),
        };
        if !path.is_file() {
            return fail(
                2,
                &format!("log {}: no database at {}", cfg.origin, path.display()),
            );
        }
        let before = std::fs::metadata(&path).map_or(0, |m| m.len());
        match quire_server::store::redb::RedbStore::compact_file(&path) {
            Ok(after) => println!(
                "log {}: {} compacted from {before} to {after} bytes",
                cfg.origin,
                path.display()
            ),
            Err(e) => {
                return fail(
                    1,
                    &format!("log {}: compacting {}: {e}", cfg.origin, path.display()),
                )
            }
        }
    }
    ExitCode::SUCCESS
}

/// `quire-server reindex`: each configured log in event mode, its event
/// indexes rebuilt from its envelopes and compared with the stored ones
/// (and, without `--check`, replaced where they differ).
pub(crate) fn reindex(args: &ReindexArgs) -> ExitCode {
    use quire_server::store::Storage as _;
    let config = match args.store.config() {
        Ok(c) => c,
        Err(e) => return fail(2, &quire_host::error::Report(e.as_ref()).to_string()),
    };
    let mut differs = false;
    for cfg in &config.logs {
        let (path, _) = match files(&config, cfg) {
            Ok(f) => f,
            Err(e) => return fail(2, &e),
        };
        let store = match open_store(cfg, &path, false) {
            Ok(s) => s,
            Err((code, e)) => return fail(code, &e),
        };
        match store
            .reader()
            .and_then(|r| quire_server::events::stored_mode(&r))
        {
            Ok(true) => {}
            Ok(false) => {
                println!("log {}: not in event mode: no event index", cfg.origin);
                continue;
            }
            Err(e) => return fail(1, &format!("log {}: {e}", cfg.origin)),
        }
        let (diff, rebuilt) =
            match quire_server::events::reindex::reindex(&store, !args.check, progress("read")) {
                Ok(r) => r,
                Err(e) => return fail(1, &format!("log {}: {e}", cfg.origin)),
            };
        let sizes = format!(
            "{} keys, {} log times",
            rebuilt.newest.len(),
            rebuilt.times.len()
        );
        if diff.is_empty() {
            println!(
                "log {}: the event index equals the one rebuilt from the envelopes ({sizes})",
                cfg.origin
            );
            continue;
        }
        differs = true;
        println!(
            "log {}: the event index DIFFERS from the envelopes: {} keys missing or wrong, {} keys no event has, {} log times missing or wrong{}",
            cfg.origin,
            diff.wrong_keys,
            diff.extra_keys,
            diff.wrong_times,
            if args.check {
                String::new()
            } else {
                format!("; replaced by the rebuilt one ({sizes})")
            }
        );
    }
    if differs && args.check {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
