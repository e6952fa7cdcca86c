//! `quire-witness`: runs a Quire witness, or fetches the evidence one holds.

/// mimalloc: the server allocates and frees many small buffers on every
/// request and commit from several threads, where glibc's arenas contend
/// (see `docs/PERFORMANCE.md`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::ListEvidenceRequest;
use quire_witness::WitnessConfig;

#[derive(Parser)]
#[command(
    name = "quire-witness",
    version,
    about = "Quire transparency log witness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the witness.
    Run {
        /// TOML configuration file (see the README).
        #[arg(long, env = "QUIRE_WITNESS_CONFIG")]
        config: PathBuf,
        /// gRPC address (overrides the file).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// C2SP HTTP and metrics address (overrides the file).
        #[arg(long)]
        http_listen: Option<std::net::SocketAddr>,
        /// Data directory (overrides the file).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print the split-view evidence a running witness holds, or write each
    /// to a file that `quire audit evidence` checks.
    Evidence {
        /// The witness's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:7410")]
        witness: String,
        /// Only this log.
        #[arg(long, default_value = "")]
        origin: String,
        /// Write `evidence-N.json` files here instead of printing.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    quire_host::logging::init();
    if let Err(e) = quire_host::memory::no_transparent_huge_pages() {
        tracing::warn!(error = %e, "transparent huge pages stay on");
    }
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quire-witness: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run {
                config,
                listen,
                http_listen,
                data_dir,
            } => run(config, listen, http_listen, data_dir).await,
            Command::Evidence {
                witness,
                origin,
                out,
            } => evidence(witness, origin, out).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quire-witness: {}", quire_host::error::Report(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

async fn run(
    config: PathBuf,
    listen: Option<std::net::SocketAddr>,
    http_listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut cfg = WitnessConfig::load(&config)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(h) = http_listen {
        cfg.http_listen = Some(h);
    }
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    let (signer, created) = quire_witness::keyfile::load_or_create(&cfg.data_dir, &cfg.name)?;
    let vkey = signer.verifier().to_vkey();
    let witness = quire_witness::open(&cfg, signer)?;
    let grpc = tokio::net::TcpListener::bind(cfg.listen).await?;
    let http = match cfg.http_listen {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
        None => None,
    };
    let metrics = if http.is_some() {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .ok()
    } else {
        None
    };
    // Tests and scripts read the bound addresses from stdout.
    // Before "listening on": a SIGTERM from then on is a graceful stop.
    let shutdown = quire_host::logging::shutdown_signal();
    println!("listening on {}", grpc.local_addr()?);
    if let Some(h) = &http {
        println!("http on {}", h.local_addr()?);
    }
    println!("witness key {vkey}");
    tracing::info!(
        name = %cfg.name,
        key = %vkey,
        created,
        grpc = %grpc.local_addr()?,
        http = ?cfg.http_listen,
        logs = cfg.logs.len(),
        peers = cfg.peers.len(),
        "witness serving"
    );
    quire_witness::run(&cfg, witness, grpc, http, metrics, shutdown).await?;
    tracing::info!("witness stopped");
    Ok(())
}

async fn evidence(witness: String, origin: String, out: Option<PathBuf>) -> anyhow::Result<()> {
    let mut client = WitnessClient::connect(witness.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the witness at {witness}: {e}"))?;
    let list = client
        .list_evidence(ListEvidenceRequest { origin })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .evidence;
    match out {
        None => {
            for e in &list {
                println!("{}", e.json);
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (i, e) in list.iter().enumerate() {
                let path = dir.join(format!("evidence-{}.json", i + 1));
                std::fs::write(&path, &e.json)?;
                println!("{}", path.display());
            }
        }
    }
    eprintln!("{} evidence file(s)", list.len());
    Ok(())
}
