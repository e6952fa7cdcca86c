//! `quire-server`: runs the Quire log server.
//!
//! With no arguments it serves one log (origin `localhost/quire`) on
//! 127.0.0.1:7400 with data in `./quire-data`, creating keys on first start.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use quire_server::config::{Config, LogConfig, DEFAULT_ORIGIN};
use quire_server::service::LogService;

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
}

#[derive(clap::Args, Clone, Default)]
struct RunArgs {
    /// TOML configuration file.
    #[arg(long, env = "QUIRE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the file).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory (overrides the file).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Origin of the log to serve when the file configures none.
    #[arg(long)]
    origin: Option<String>,
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
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Run(a)) => a,
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
            eprintln!("quire-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = Some(m);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(quire_server::config::TlsConfig {
            cert,
            key,
            client_ca: args.tls_client_ca,
        });
    }
    if config.logs.is_empty() {
        config.logs.push(LogConfig::new(
            args.origin.as_deref().unwrap_or(DEFAULT_ORIGIN),
        ));
    }
    config.validate()?;
    let mut logs = Vec::new();
    for cfg in &config.logs {
        let (log, created) = quire_server::open_redb_log(&config.data_dir, cfg)?;
        println!(
            "log {} (size {}){}",
            log.origin(),
            log.latest().stored.size,
            if created { ", new keys created" } else { "" }
        );
        for v in log.verifiers() {
            println!("  verifier key {}", v.to_vkey());
        }
        logs.push(log);
    }
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = config.metrics_listen {
        let handle = quire_server::metrics::install()
            .ok_or_else(|| anyhow::anyhow!("cannot install the metrics recorder"))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("metrics on http://{}/metrics", listener.local_addr()?);
        tokio::spawn(quire_server::metrics::serve(listener, handle, async {
            let _ = metrics_stopped.await;
        }));
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    println!(
        "listening on {}{}",
        listener.local_addr()?,
        match &config.tls {
            Some(t) if t.client_ca.is_some() => " (TLS, client certificates required)",
            Some(_) => " (TLS)",
            None => "",
        }
    );
    println!("data in {}", config.data_dir.display());
    let service = LogService::new(logs);
    quire_server::serve(listener, service, &config, shutdown_signal()).await?;
    let _ = metrics_stop.send(());
    println!("stopped: queued entries integrated, storage closed");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
