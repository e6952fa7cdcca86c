//! The binary's offline subcommands: `import` (recovery from an entries
//! dump) and `fsck` (a full check of a log's storage). Exit codes follow the
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
use quire_server::store::redb::RedbStore;

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

#[derive(clap::Args, Clone)]
pub(crate) struct FsckArgs {
    #[command(flatten)]
    store: StoreArgs,
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
    let slug = keyfile::slug(&cfg.origin);
    let hw_dir = config.high_water_dir().map_err(|e| e.to_string())?;
    Ok((
        config.data_dir.join("logs").join(format!("{slug}.redb")),
        HighWater::at(hw_dir.join(format!("{slug}.highwater"))),
    ))
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
    let signers = match keyfile::load_or_create(&config.data_dir.join("keys"), &cfg.origin, false) {
        Ok((s, _)) => s,
        Err(e) => return fail(2, &quire_host::error::Report(e.as_ref()).to_string()),
    };
    let Some(primary) = signers.first() else {
        return fail(2, "the log has no key");
    };
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
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(3, &format!("creating {}: {e}", dir.display()));
        }
    }
    let store = match RedbStore::open(&path, cfg.store_options()) {
        Ok(s) => s,
        Err(e) => return fail(3, &format!("opening {}: {e}", path.display())),
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
            fail(code, &format!("import into {}: {e}", path.display()))
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
        if !path.is_file() {
            return fail(
                2,
                &format!("log {}: no database at {}", cfg.origin, path.display()),
            );
        }
        let keys = match keyfile::load_or_create(&config.data_dir.join("keys"), &cfg.origin, false)
        {
            Ok((s, _)) => s
                .iter()
                .map(quire_core::LogSigner::verifier)
                .collect::<Vec<_>>(),
            Err(e) => return fail(2, &quire_host::error::Report(e.as_ref()).to_string()),
        };
        let store = match RedbStore::open(&path, cfg.store_options()) {
            Ok(s) => s,
            Err(e) => {
                println!(
                    "log {}: DAMAGED: {} cannot be opened: {e}",
                    cfg.origin,
                    path.display()
                );
                damaged = true;
                continue;
            }
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
                println!(
                    "log {}: DAMAGED: {} cannot be read: {e}",
                    cfg.origin,
                    path.display()
                );
                damaged = true;
                continue;
            }
        };
        if report.clean() {
            println!(
                "log {}: OK: size {}, {} entries hashed, {} stored hashes and {} checkpoints checked, high-water record agrees",
                cfg.origin, report.size, report.entries, report.hashes, report.checkpoints
            );
        } else {
            damaged = true;
            println!(
                "log {}: DAMAGED: {} problems in {} (size {}):",
                cfg.origin,
                report.problem_count,
                path.display(),
                report.size
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
