//! `quire-server`: runs the Quire log server.
//!
//! With no arguments it serves one log (origin `localhost/quire`) on
//! 127.0.0.1:7400 with data in `./quire-data`, creating keys on first start.

/// mimalloc: the server allocates and frees many small buffers on every
/// request and commit from several threads, where glibc's arenas contend
/// (see `docs/PERFORMANCE.md`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use quire_server::config::{Config, LogConfig, DEFAULT_ORIGIN};

mod recovery;

#[derive(Parser)]
#[command(
    name = "quire-server",
    version,
    about = "Quire transparency log server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Run(RunArgs),
    /// Rebuild or extend a log's database from an entries dump (`quire
    /// entries`), verified against a checkpoint the log signed; nothing is
    /// signed. See the README, "Restoring a log".
    Import(recovery::ImportArgs),
    /// Check a log's storage offline: every entry, hash and checkpoint.
    /// Exit 0 when clean, 1 when damage is found, 2 for bad arguments.
    Fsck(recovery::FsckArgs),
    /// Move a log to another storage engine (redb to PostgreSQL or back):
    /// every entry, hash and signed checkpoint copied and verified, same
    /// origin and keys, nothing signed. Stop the server first. See the
    /// README, "Storing logs in PostgreSQL".
    Migrate(recovery::MigrateArgs),
    /// Compact the redb files of the configured logs (stop the server
    /// first): space freed by erased payloads returns to the file system,
    /// and their bytes leave the file.
    Compact(recovery::FsckArgs),
    /// Rebuild the event indexes of logs in event mode from their
    /// envelopes (stop the server first), or with --check only compare:
    /// exit 0 when the stored index equals the rebuilt one, 1 when it
    /// differs.
    Reindex(recovery::ReindexArgs),
    /// Make a static API token: the token is printed once, on standard
    /// output; the policy keeps only its hash (the `[[tokens]]` entry,
    /// printed on standard error, or appended to --policy).
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The token's name, as grants name it (`token:NAME`).
    #[arg(long)]
    name: String,
    /// Append the token's entry to this access policy file (a running
    /// server takes it within a second).
    #[arg(long)]
    policy: Option<PathBuf>,
}

fn token(args: &TokenArgs) -> std::process::ExitCode {
    if args.name.is_empty()
        || !args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        eprintln!("quire-server token: --name must be letters, digits and - _ . @ only");
        return std::process::ExitCode::from(2);
    }
    let (token, hash) = quire_server::access::new_token();
    let entry = format!(
        "\n[[tokens]]\nname = \"{}\"\nsha256 = \"{hash}\"\n",
        args.name
    );
    if let Some(path) = &args.policy {
        use std::io::Write as _;
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(entry.as_bytes()).and_then(|()| f.sync_all()));
        if let Err(e) = appended {
            eprintln!(
                "quire-server token: cannot append to {}: {e}",
                path.display()
            );
            return std::process::ExitCode::FAILURE;
        }
        eprintln!(
            "token {:?} added to {}; grant it roles there (who = \"token:{}\")",
            args.name,
            path.display(),
            args.name
        );
    } else {
        eprintln!("add to the access policy:{entry}");
    }
    println!("{token}");
    std::process::ExitCode::SUCCESS
}

/// Which logs, and where their files are.
#[derive(clap::Args, Clone, Default)]
struct StoreArgs {
    /// TOML configuration file.
    #[arg(long, env = "QUIRE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the file).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Origin of the log when the file configures none.
    #[arg(long)]
    origin: Option<String>,
    /// Where the logs' high-water records live (overrides the file; default
    /// beside the data directory, `DATA_DIR.highwater`). Keep it out of the
    /// data directory's backups.
    #[arg(long)]
    high_water_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The configuration these arguments select, validated.
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            config.data_dir.clone_from(d);
        }
        if let Some(d) = &self.high_water_dir {
            config.high_water_dir = Some(d.clone());
        }
        match (&self.origin, config.logs.is_empty()) {
            (Some(o), false) => anyhow::bail!(
                "--origin {o:?} was given, but the configuration file names its logs in [[logs]]: \
                 name the log there, or leave out one of the two"
            ),
            (o, true) => config
                .logs
                .push(LogConfig::new(o.as_deref().unwrap_or(DEFAULT_ORIGIN))),
            (None, false) => {}
        }
        config.validate()?;
        Ok(config)
    }
}

#[derive(clap::Args, Clone, Default)]
struct RunArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on (overrides the file).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (overrides the file).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// TLS certificate chain, PEM (with --tls-key; overrides the file).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA (mTLS).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: let clients connect without a certificate
    /// (for bearer tokens and anonymous callers under an access policy).
    #[arg(long, requires = "tls_client_ca")]
    tls_client_optional: bool,
    /// The access policy file: who may do what (overrides the file).
    #[arg(long)]
    access: Option<PathBuf>,
    /// Create configured logs that do not exist yet, in a data directory
    /// that already holds other logs.
    #[arg(long)]
    new_log: bool,
    /// For a log whose database holds checkpoints but that has no
    /// high-water record (first started before the record existed): take
    /// the database's latest checkpoint as the newest the log published.
    #[arg(long)]
    adopt_database: bool,
}

fn main() -> std::process::ExitCode {
    quire_host::logging::init();
    if let Err(e) = quire_host::memory::no_transparent_huge_pages() {
        tracing::warn!(error = %e, "transparent huge pages stay on");
    }
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Run(a)) => a,
        Some(Command::Import(a)) => return recovery::import(&a),
        Some(Command::Fsck(a)) => return recovery::fsck(&a),
        Some(Command::Migrate(a)) => return recovery::migrate(&a),
        Some(Command::Compact(a)) => return recovery::compact(&a),
        Some(Command::Reindex(a)) => return recovery::reindex(&a),
        Some(Command::Token(a)) => return token(&a),
        None => cli.run,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quire-server: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quire-server: {}", quire_host::error::Report(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = args.store.config()?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = Some(m);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(quire_server::config::TlsConfig {
            cert,
            key,
            client_ca: args.tls_client_ca,
            client_cert: if args.tls_client_optional {
                quire_server::config::ClientCert::Optional
            } else {
                quire_server::config::ClientCert::Required
            },
        });
    }
    if let Some(a) = args.access {
        config.access = Some(a);
    }
    config.new_logs = args.new_log;
    config.adopt_database = args.adopt_database;
    let high_water_dir = config.high_water_dir()?;
    let server = quire_server::Server::open(config, &high_water_dir)?;
    let config = server.config();
    for (log, created) in server.logs() {
        println!(
            "log {} (size {}){}",
            log.origin(),
            log.latest().stored.size,
            if created { ", new keys created" } else { "" }
        );
        let keys_dir = config.data_dir.join("keys");
        let slug = quire_server::keyfile::slug(log.origin());
        for v in log.verifiers() {
            let (alg, ext) = match v.key_type() {
                quire_core::KeyType::EcdsaP256 => ("ECDSA P-256", "p256.vkey"),
                quire_core::KeyType::Ed25519 => ("Ed25519", "ed25519.vkey"),
                quire_core::KeyType::CosignatureV1 => ("cosignature/v1", "vkey"),
            };
            println!(
                "  verifier key ({alg}, also in {}): {}",
                keys_dir.join(format!("{slug}.{ext}")).display(),
                v.to_vkey()
            );
        }
    }
    println!("high-water records in {}", high_water_dir.display());
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("metrics on http://{}/metrics", listener.local_addr()?);
            Some(listener)
        }
        None => None,
    };
    let grpc = tokio::net::TcpListener::bind(config.listen).await?;
    // Before "listening on": a SIGTERM from then on is a graceful stop.
    let shutdown = quire_host::logging::shutdown_signal();
    println!(
        "listening on {}{}",
        grpc.local_addr()?,
        match &config.tls {
            Some(t)
                if t.client_ca.is_some()
                    && t.client_cert == quire_server::config::ClientCert::Optional =>
                " (TLS, client certificates verified when presented)",
            Some(t) if t.client_ca.is_some() => " (TLS, client certificates required)",
            Some(_) => " (TLS)",
            None => "",
        }
    );
    println!("data in {}", config.data_dir.display());
    match &config.access {
        Some(a) => println!("access policy {} (reloaded on change)", a.display()),
        None => println!("no access policy: every caller may do everything"),
    }
    server
        .run(quire_server::Faces { grpc, metrics }, shutdown)
        .await?;
    println!("stopped: queued entries integrated, storage closed");
    Ok(())
}
