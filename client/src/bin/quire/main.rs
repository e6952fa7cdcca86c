//! `quire`: submit to a Quire log, get proofs, and verify them offline.
//!
//! Exit codes: 0 success; 1 verification failed (the material is not what
//! it claims); 2 bad input (missing or malformed files, flags); 3 the log
//! could not be reached or refused the request.

use std::path::PathBuf;
use std::process::ExitCode;

mod admin;
mod events;
mod gossip;
mod keyed;
mod log_cmds;
mod saved;
mod search;

use clap::{Parser, Subcommand, ValueEnum};
use log_cmds::{add, checkpoint, keygen, prove, verify, Which};
use quire_client::policy::LogTrust;
use quire_client::rpc::{Endpoint, LogRpc, RpcError};
use quire_core::{Note, VerifierKey};
use saved::{audit, consistency, entries, monitor, MonitorOpts};

/// Largest file `quire` reads as an entry (the server's default limit).
const MAX_ENTRY_FILE: u64 = 64 * 1024;

#[derive(Parser)]
#[command(
    name = "quire",
    version,
    about = "Submit to a Quire transparency log and verify what it says"
)]
struct Cli {
    /// Machine-readable output (64-bit numbers as strings).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Trust {
    /// The log's origin (default: the only log of the server, or the
    /// checkpoint's origin when verifying offline with --log-key).
    #[arg(long)]
    origin: Option<String>,
    /// A verifier key of the log (C2SP vkey text, or @FILE). Repeatable.
    #[arg(long = "log-key")]
    log_keys: Vec<String>,
    /// A witness verifier key (vkey text or @FILE). Repeatable.
    #[arg(long = "witness-key")]
    witness_keys: Vec<String>,
    /// Witness cosignatures required before a checkpoint is trusted.
    #[arg(long, default_value_t = 0)]
    quorum: usize,
}

#[derive(clap::Args, Clone)]
struct Net {
    /// Server address: http://HOST:PORT, or https:// for TLS.
    #[arg(long, default_value = "http://127.0.0.1:7400", env = "QUIRE_ADDR", value_parser = parse_addr)]
    addr: String,
    /// PEM file of the CA that signed the server's certificate (https).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that require mTLS.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Key of --client-cert.
    #[arg(long)]
    client_key: Option<PathBuf>,
    /// Seconds before a call gives up.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Bearer token sent with every call: a Quire API token
    /// (`quire-server token`) or an OIDC/JWT token. Prefer the
    /// environment variable, which stays out of the process list.
    #[arg(long, env = "QUIRE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyKind {
    /// A log key, Ed25519.
    LogEd25519,
    /// A log key, ECDSA P-256.
    LogP256,
    /// A witness key (cosignature/v1, Ed25519).
    Witness,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a key: writes the private key (mode 0600), prints the vkey.
    Keygen {
        /// What the key is for.
        #[arg(long, value_enum, default_value = "witness")]
        kind: KeyKind,
        /// Key name (the log's origin, or the witness's name).
        #[arg(long)]
        name: String,
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add an entry (a file, or - for stdin). With --wait, write a proof
    /// bundle verified against the log's keys.
    Add {
        /// The entry.
        file: PathBuf,
        /// Wait for the signed checkpoint and write a proof bundle here.
        #[arg(long)]
        wait: Option<PathBuf>,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Write a proof bundle for the entry at an index, verified first.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["index", "entry", "leaf_hash"])))]
    Prove {
        /// Entry index.
        #[arg(long)]
        index: Option<u64>,
        /// The entry (a file): proven by its leaf hash, carried in the bundle.
        #[arg(long)]
        entry: Option<PathBuf>,
        /// The entry's leaf hash (base64), when the entry is not at hand.
        #[arg(long)]
        leaf_hash: Option<String>,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Print the log's latest checkpoint, verified.
    Checkpoint {
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Prove that the log's latest checkpoint extends a saved one; with
    /// --chain, append both to a chain file that `quire audit chain` checks.
    Consistency {
        /// The saved, older checkpoint (a signed note file).
        #[arg(long)]
        from: PathBuf,
        /// Chain file to append to (JSON lines).
        #[arg(long)]
        chain: Option<PathBuf>,
        /// Also save the new checkpoint here.
        #[arg(long)]
        save: Option<PathBuf>,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Download entries [start, end) as base64 lines (to stdout or --out),
    /// with the signed checkpoint they are checked against.
    Entries {
        /// First index.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// End (exclusive); default: the latest checkpoint's size.
        #[arg(long)]
        end: Option<u64>,
        /// Write the entries here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Save the verified checkpoint here (for `quire audit entries`).
        #[arg(long)]
        checkpoint_out: Option<PathBuf>,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Follow a log: download every new entry, recompute the tree, verify
    /// each checkpoint and its consistency, persist state only after that.
    /// On misbehaviour: write the evidence (for a split view) and exit 1.
    Monitor {
        /// State file (created on first run; resumed after).
        #[arg(long)]
        state: PathBuf,
        /// Where split-view evidence is written.
        #[arg(long, default_value = "quire-evidence.json")]
        evidence_out: PathBuf,
        /// Check once and exit instead of following.
        #[arg(long)]
        once: bool,
        /// Milliseconds between polls.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Report misbehaviour and keep following instead of exiting.
        #[arg(long)]
        keep_going: bool,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Audit saved material offline: a verdict, and exit 1 on any failure.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Hand a signed checkpoint you were shown (as `quire checkpoint`
    /// prints it) to witnesses, which check it against their own view of
    /// the log and keep evidence of a split view. Exit 1 when one finds one.
    Gossip {
        /// The signed checkpoint (a note file, or - for stdin).
        checkpoint: PathBuf,
        /// A witness's gRPC address (http://HOST:PORT). Repeatable.
        #[arg(long = "witness", required = true)]
        witnesses: Vec<String>,
        /// Seconds before a call gives up.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// List the server's logs: origin, state, size, keys.
    Logs {
        #[command(flatten)]
        net: Net,
    },
    /// Manage the server: create and freeze logs, its access policy
    /// (needs the admin role).
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// Audit events in a log in event mode: add them, read them back.
    #[command(subcommand)]
    Event(events::EventCmd),
    /// The events of a log-time range, or of one actor, action, resource
    /// or type, each proven in the log and the answer proven complete
    /// against the log's key (--log-key).
    Search {
        #[command(flatten)]
        key: keyed::KeyArgs,
        /// With a key: go on from this event (the one an answer cut short
        /// names).
        #[arg(long, requires = "key")]
        before: Option<u64>,
        /// From this log time: Unix ms, RFC 3339, or `-N[smhd]` before now
        /// (default: the log's start).
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        /// Up to this log time, not included (default: the checkpoint).
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        /// Most events (the server answers at most 100000).
        #[arg(long, default_value_t = 10_000)]
        limit: u32,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Verify a proof bundle offline.
    Verify {
        /// The bundle (a C2SP tlog-proof file).
        bundle: PathBuf,
        /// Check this entry file instead of the one the bundle carries.
        #[arg(long, conflicts_with = "leaf_hash")]
        entry: Option<PathBuf>,
        /// Check this leaf hash (base64) instead.
        #[arg(long)]
        leaf_hash: Option<String>,
        #[command(flatten)]
        trust: Trust,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// A chain of checkpoints with consistency proofs (from `quire consistency --chain`).
    Chain {
        /// The chain file.
        file: PathBuf,
        #[command(flatten)]
        trust: Trust,
    },
    /// An entries dump (from `quire entries`, starting at 0) against a signed checkpoint.
    Entries {
        /// The dump.
        dump: PathBuf,
        /// The signed checkpoint of the dump's size.
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        trust: Trust,
    },
    /// An event log's indexes recomputed from an entries dump (from
    /// `quire entries`, starting at 0) checked against a signed checkpoint:
    /// every link, log time never going back, every map head's root.
    Index {
        /// The dump.
        dump: PathBuf,
        /// The signed checkpoint of the dump's size.
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        trust: Trust,
    },
    /// A split-view evidence file.
    Evidence {
        /// The evidence (JSON).
        file: PathBuf,
        #[command(flatten)]
        trust: Trust,
    },
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
enum Failure {
    Verify(String),
    Input(String),
    Unreachable(String),
    /// Misbehaviour proven and already reported on stdout: exit 1, and
    /// nothing more to print.
    Proven,
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Verify(_) | Failure::Proven => 1,
            Failure::Input(_) => 2,
            Failure::Unreachable(_) => 3,
        }
    }
    /// The same failure, its message prefixed with `context`.
    fn with_context(self, context: &str) -> Self {
        match self {
            Failure::Verify(m) => Failure::Verify(format!("{context}: {m}")),
            Failure::Input(m) => Failure::Input(format!("{context}: {m}")),
            Failure::Unreachable(m) => Failure::Unreachable(format!("{context}: {m}")),
            Failure::Proven => Failure::Proven,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Verify(m) | Failure::Input(m) | Failure::Unreachable(m) => m,
            Failure::Proven => "",
        }
    }
}

impl From<RpcError> for Failure {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Verify(m) => Failure::Verify(m),
            RpcError::Input(m) => Failure::Input(m),
            // The request itself was wrong: an unknown log, an index past
            // the tree, a limit.
            RpcError::Status {
                code:
                    tonic::Code::InvalidArgument
                    | tonic::Code::NotFound
                    | tonic::Code::OutOfRange
                    | tonic::Code::FailedPrecondition,
                ..
            } => Failure::Input(e.to_string()),
            e => Failure::Unreachable(e.to_string()),
        }
    }
}

/// An address with its scheme; without one, bad input (exit 2) in one
/// sentence that shows the fix.
fn parse_addr(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} has no scheme: write http://{s} (or https://{s} for TLS)"
        ))
    }
}

fn read_limited(path: &std::path::Path, limit: u64, what: &str) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let mut buf = Vec::new();
    let taken = if path.as_os_str() == "-" {
        std::io::stdin().take(limit + 1).read_to_end(&mut buf)
    } else {
        // A regular file: a FIFO or a device is refused, never waited on.
        let f = quire_host::open_regular(path, false)
            .map_err(|e| Failure::Input(format!("{what}: {e}")))?;
        f.take(limit + 1).read_to_end(&mut buf)
    };
    taken.map_err(|e| Failure::Input(format!("{what} {}: {e}", path.display())))?;
    if buf.len() as u64 > limit {
        return Err(Failure::Input(format!(
            "{what} {} is over the {limit}-byte limit",
            path.display()
        )));
    }
    Ok(buf)
}

fn parse_keys(texts: &[String], what: &str) -> Result<Vec<VerifierKey>, Failure> {
    texts
        .iter()
        .map(|t| {
            let text = match t.strip_prefix('@') {
                Some(path) => String::from_utf8(read_limited(&PathBuf::from(path), 4096, what)?)
                    .map_err(|_| Failure::Input(format!("{what} file {path} is not text")))?,
                None => t.clone(),
            };
            VerifierKey::parse(text.trim())
                .map_err(|e| Failure::Input(format!("{what} {:?}: {e}", text.trim())))
        })
        .collect()
}

fn trust_of(t: &Trust, default_origin: Option<&str>) -> Result<LogTrust, Failure> {
    let log_keys = parse_keys(&t.log_keys, "log key")?;
    if log_keys.is_empty() {
        return Err(Failure::Input(
            "give the log's verifier key with --log-key (the server prints it at start)".into(),
        ));
    }
    let witnesses = parse_keys(&t.witness_keys, "witness key")?;
    if t.quorum > witnesses.len() {
        return Err(Failure::Input(format!(
            "--quorum {} but only {} witness keys given",
            t.quorum,
            witnesses.len()
        )));
    }
    let origin = t
        .origin
        .clone()
        .or_else(|| default_origin.map(str::to_owned))
        .unwrap_or_else(|| log_keys[0].name().to_owned());
    Ok(LogTrust {
        origin,
        log_keys,
        witnesses,
        quorum: t.quorum,
    })
}

fn endpoint(n: &Net) -> Endpoint {
    Endpoint {
        addr: n.addr.clone(),
        ca: n.ca.clone(),
        client_cert: n.client_cert.clone().zip(n.client_key.clone()),
        timeout: std::time::Duration::from_secs(n.timeout),
        token: n.token.clone(),
    }
}

fn write_file(path: &PathBuf, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes)
        .map_err(|e| Failure::Input(format!("writing {}: {e}", path.display())))
}

fn print(json: bool, human: &str, value: &serde_json::Value) {
    if json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

#[allow(clippy::too_many_lines)] // one arm a command
async fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    match cli.cmd {
        Cmd::Keygen { kind, name, out } => keygen(json, kind, &name, &out),
        Cmd::Add {
            file,
            wait,
            net,
            trust,
        } => add(json, &file, wait, &net, &trust).await,
        Cmd::Prove {
            index,
            entry,
            leaf_hash,
            out,
            net,
            trust,
        } => {
            let which = match (index, entry, leaf_hash) {
                (Some(i), _, _) => Which::Index(i),
                (_, Some(e), _) => Which::Entry(read_limited(&e, MAX_ENTRY_FILE, "entry")?),
                (_, _, Some(h)) => Which::Leaf(
                    quire_core::Hash::from_base64(&h)
                        .map_err(|e| Failure::Input(format!("--leaf-hash: {e}")))?,
                ),
                _ => {
                    return Err(Failure::Input(
                        "give --index, --entry or --leaf-hash".into(),
                    ))
                }
            };
            prove(json, which, &out, &net, &trust).await
        }
        Cmd::Checkpoint { net, trust } => checkpoint(json, &net, &trust).await,
        Cmd::Consistency {
            from,
            chain,
            save,
            net,
            trust,
        } => consistency(json, &from, chain.as_ref(), save.as_ref(), &net, &trust).await,
        Cmd::Entries {
            start,
            end,
            out,
            checkpoint_out,
            net,
            trust,
        } => {
            entries(
                json,
                start,
                end,
                out.as_ref(),
                checkpoint_out.as_ref(),
                &net,
                &trust,
            )
            .await
        }
        Cmd::Audit(a) => audit(json, a),
        Cmd::Logs { net } => admin::logs(json, &net).await,
        Cmd::Admin(cmd) => admin::admin(json, cmd).await,
        Cmd::Event(cmd) => events::event(json, cmd).await,
        Cmd::Search {
            key,
            before,
            from,
            to,
            limit,
            net,
            trust,
        } => search::search(json, &key, before, (from, to), limit, &net, &trust).await,
        Cmd::Gossip {
            checkpoint,
            witnesses,
            timeout,
        } => {
            gossip::gossip(
                json,
                &checkpoint,
                &witnesses,
                std::time::Duration::from_secs(timeout),
            )
            .await
        }
        Cmd::Monitor {
            state,
            evidence_out,
            once,
            interval_ms,
            keep_going,
            net,
            trust,
        } => {
            let opts = MonitorOpts {
                state,
                evidence_out,
                once,
                interval: std::time::Duration::from_millis(interval_ms),
                keep_going,
            };
            monitor(json, &opts, &net, &trust).await
        }
        Cmd::Verify {
            bundle,
            entry,
            leaf_hash,
            trust,
        } => verify(json, &bundle, entry, leaf_hash.as_deref(), &trust),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Proven) => ExitCode::from(1),
        Err(f) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": f.message(), "exit_code": f.code()})
                );
            } else {
                eprintln!("quire: {}", f.message());
            }
            ExitCode::from(f.code())
        }
    }
}

/// Connects and settles what is trusted: the given origin or the server's
/// only log, with the keys and policy from the flags.
async fn connect_trusted(net: &Net, trust: &Trust) -> Result<(LogRpc, LogTrust), Failure> {
    let mut rpc = LogRpc::connect(&endpoint(net)).await?;
    let origin = trust.origin.clone().unwrap_or_default();
    let t = trust_of(trust, rpc.default_origin(&origin).await?.as_deref())?;
    // A policy that needs cosignatures asks the log for witnessed checkpoints.
    rpc.set_witnessed(t.quorum > 0);
    Ok((rpc, t))
}

/// The log's latest checkpoint, verified against `t`.
async fn latest_verified(
    rpc: &mut LogRpc,
    t: &LogTrust,
) -> Result<(Note, quire_core::Checkpoint), Failure> {
    let note_bytes = rpc.checkpoint(&t.origin).await?;
    let note = Note::parse(&note_bytes)
        .map_err(|e| Failure::Verify(format!("checkpoint from the log: {e}")))?;
    let (cp, _) = t
        .verify_note(&note)
        .map_err(|e| Failure::Verify(e.to_string()))?;
    Ok((note, cp))
}
