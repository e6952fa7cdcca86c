//! `quire logs` and `quire admin …`: the server's logs as it lists them,
//! and the admin service (create and freeze logs, the access policy).

use std::path::PathBuf;

use clap::Subcommand;
use quire_client::rpc::{AdminRpc, LogInfo, LogRpc};

use crate::{endpoint, print, read_limited, write_file, Failure, Net};

/// Largest policy file sent (the server's limit).
const MAX_POLICY_FILE: u64 = 1 << 20;

/// Largest private key file imported (the server's limit).
const MAX_KEY_FILE: u64 = 4096;

#[derive(Subcommand)]
pub(crate) enum AdminCmd {
    /// Create a log, served at once and after every restart.
    Create {
        /// The new log's origin.
        origin: String,
        /// Take the settings (limits, storage, witnesses) of this log.
        #[arg(long)]
        like: Option<String>,
        /// Import this private key file instead of generating keys; give
        /// two: one ECDSA P-256 and one Ed25519 (`quire keygen --kind
        /// log-p256` / `log-ed25519`), named by the origin.
        #[arg(long = "import-key")]
        import_keys: Vec<PathBuf>,
        #[command(flatten)]
        net: Net,
    },
    /// Freeze a log: it integrates the writes it took, then refuses every
    /// new one; reads and proofs go on, across restarts.
    Freeze {
        /// The log's origin.
        origin: String,
        #[command(flatten)]
        net: Net,
    },
    /// The server's access policy file.
    #[command(subcommand)]
    Access(AccessCmd),
}

#[derive(Subcommand)]
pub(crate) enum AccessCmd {
    /// Print it (or write it to --out), with its SHA-256.
    Get {
        /// Write the policy here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        net: Net,
    },
    /// Replace it with a file; in force when this returns. Refused when
    /// the file on the server is not the one --replaces names.
    Set {
        /// The new policy (TOML).
        file: PathBuf,
        /// The SHA-256 (hex) of the policy it replaces, as `get` printed
        /// it: a change made meanwhile is not overwritten. Without it,
        /// whatever is there is replaced.
        #[arg(long)]
        replaces: Option<String>,
        #[command(flatten)]
        net: Net,
    },
}

fn info_json(l: &LogInfo) -> serde_json::Value {
    serde_json::json!({
        "origin": l.origin,
        "verifier_keys": l.verifier_keys,
        "state": l.state,
        "size": l.size.to_string(),
        "signed_at_ms": l.signed_at_ms.to_string(),
        "frozen_at_ms": (l.frozen_at_ms > 0).then(|| l.frozen_at_ms.to_string()),
        "entries_dropped_at_ms": (l.entries_dropped_at_ms > 0).then(|| l.entries_dropped_at_ms.to_string()),
        "family": (!l.family.is_empty()).then(|| l.family.clone()),
        "period_start_ms": (!l.family.is_empty()).then(|| l.period_start_ms.to_string()),
        "period_end_ms": (!l.family.is_empty()).then(|| l.period_end_ms.to_string()),
    })
}

fn info_line(l: &LogInfo) -> String {
    use std::fmt::Write as _;
    let mut line = format!("{}\t{}\tsize {}", l.origin, l.state, l.size);
    if l.frozen_at_ms > 0 {
        let _ = write!(line, "\tfrozen at {} ms", l.frozen_at_ms);
    }
    if l.entries_dropped_at_ms > 0 {
        let _ = write!(
            line,
            "\tentries dropped at {} ms (proofs remain)",
            l.entries_dropped_at_ms
        );
    }
    if !l.family.is_empty() {
        let _ = write!(
            line,
            "\tshard of {} for [{}, {}) ms",
            l.family, l.period_start_ms, l.period_end_ms
        );
    }
    for k in &l.verifier_keys {
        let _ = write!(line, "\n  key {k}");
    }
    line
}

/// `quire logs`.
pub(crate) async fn logs(json: bool, net: &Net) -> Result<(), Failure> {
    let mut rpc = LogRpc::connect(&endpoint(net)).await?;
    let logs = rpc.logs().await?;
    let human: Vec<String> = logs.iter().map(info_line).collect();
    print(
        json,
        &human.join("\n"),
        &serde_json::json!({ "logs": logs.iter().map(info_json).collect::<Vec<_>>() }),
    );
    Ok(())
}

fn hex32(s: &str) -> Result<[u8; 32], Failure> {
    quire_core::Hash::from_hex(s).map(|h| h.0).ok_or_else(|| {
        Failure::Input(format!(
            "--replaces {s:?} is not a SHA-256 in hex (64 digits)"
        ))
    })
}

/// `quire admin …`.
pub(crate) async fn admin(json: bool, cmd: AdminCmd) -> Result<(), Failure> {
    match cmd {
        AdminCmd::Create {
            origin,
            like,
            import_keys,
            net,
        } => {
            let keys = import_keys
                .iter()
                .map(|p| {
                    String::from_utf8(read_limited(p, MAX_KEY_FILE, "key file")?).map_err(|_| {
                        Failure::Input(format!("key file {} is not text", p.display()))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut rpc = AdminRpc::connect(&endpoint(&net)).await?;
            let (log, generated) = rpc
                .create_log(&origin, like.as_deref().unwrap_or(""), keys)
                .await?;
            let mut value = info_json(&log);
            value["keys_generated"] = generated.into();
            print(
                json,
                &format!(
                    "created (keys {})\n{}",
                    if generated { "generated" } else { "imported" },
                    info_line(&log)
                ),
                &value,
            );
        }
        AdminCmd::Freeze { origin, net } => {
            let mut rpc = AdminRpc::connect(&endpoint(&net)).await?;
            let (log, changed) = rpc.freeze_log(&origin).await?;
            let mut value = info_json(&log);
            value["changed"] = changed.into();
            print(
                json,
                &format!(
                    "{}\n{}",
                    if changed {
                        "frozen"
                    } else {
                        "was frozen already"
                    },
                    info_line(&log)
                ),
                &value,
            );
        }
        AdminCmd::Access(AccessCmd::Get { out, net }) => {
            let mut rpc = AdminRpc::connect(&endpoint(&net)).await?;
            let (policy, sha) = rpc.access().await?;
            let sha = quire_core::Hash(sha).to_hex();
            if let Some(out) = &out {
                write_file(out, &policy)?;
            }
            let text = String::from_utf8_lossy(&policy).into_owned();
            let human = match &out {
                Some(p) => format!("sha256 {sha}\nwritten to {}", p.display()),
                None => format!("# sha256 {sha}\n{text}"),
            };
            print(
                json,
                &human,
                &serde_json::json!({ "sha256": sha, "policy": text }),
            );
        }
        AdminCmd::Access(AccessCmd::Set {
            file,
            replaces,
            net,
        }) => {
            let policy = read_limited(&file, MAX_POLICY_FILE, "policy file")?;
            let replaces = replaces.as_deref().map(hex32).transpose()?;
            let mut rpc = AdminRpc::connect(&endpoint(&net)).await?;
            let sha = quire_core::Hash(rpc.set_access(policy, replaces).await?).to_hex();
            print(
                json,
                &format!("in force: sha256 {sha}"),
                &serde_json::json!({ "sha256": sha }),
            );
        }
    }
    Ok(())
}
