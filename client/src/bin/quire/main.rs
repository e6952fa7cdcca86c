//! `quire`: submit to a Quire log, get proofs, and verify them offline.
//!
//! Exit codes: 0 success; 1 verification failed (the material is not what
//! it claims); 2 bad input (missing or malformed files, flags); 3 the log
//! could not be reached or refused the request.

use std::path::PathBuf;
use std::process::ExitCode;

mod admin;
mod cli;
mod events;
mod gossip;
mod keyed;
mod log_cmds;
mod saved;
mod search;

use clap::Parser;
use cli::{AuditCmd, Cli, Cmd, KeyKind, Net, Trust};
use log_cmds::{add, checkpoint, keygen, prove, verify, Which};
use quire_client::policy::LogTrust;
use quire_client::rpc::{Endpoint, LogRpc, RpcError};
use quire_core::{Note, VerifierKey};
use saved::{audit, consistency, entries, monitor, MonitorOpts};

/// Largest file `quire` reads as an entry (the server's default limit).
const MAX_ENTRY_FILE: u64 = 64 * 1024;

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
