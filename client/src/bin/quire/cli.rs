//! The command line of `quire`: its commands and flags (clap), and the
//! trust and network options they share.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::{admin, events, keyed};

#[derive(Parser)]
#[command(
    name = "quire",
    version,
    about = "Submit to a Quire transparency log and verify what it says"
)]
pub(crate) struct Cli {
    /// Machine-readable output (64-bit numbers as strings).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(clap::Args, Clone)]
pub(crate) struct Trust {
    /// The log's origin (default: the only log of the server, or the
    /// checkpoint's origin when verifying offline with --log-key).
    #[arg(long)]
    pub(crate) origin: Option<String>,
    /// A verifier key of the log (C2SP vkey text, or @FILE). Repeatable.
    #[arg(long = "log-key")]
    pub(crate) log_keys: Vec<String>,
    /// A witness verifier key (vkey text or @FILE). Repeatable.
    #[arg(long = "witness-key")]
    pub(crate) witness_keys: Vec<String>,
    /// Witness cosignatures required before a checkpoint is trusted.
    #[arg(long, default_value_t = 0)]
    pub(crate) quorum: usize,
}

#[derive(clap::Args, Clone)]
pub(crate) struct Net {
    /// Server address: http://HOST:PORT, or https:// for TLS.
    #[arg(long, default_value = "http://127.0.0.1:7400", env = "QUIRE_ADDR", value_parser = parse_addr)]
    pub(crate) addr: String,
    /// PEM file of the CA that signed the server's certificate (https).
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that require mTLS.
    #[arg(long, requires = "client_key")]
    pub(crate) client_cert: Option<PathBuf>,
    /// Key of --client-cert.
    #[arg(long)]
    pub(crate) client_key: Option<PathBuf>,
    /// Seconds before a call gives up.
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout: u64,
    /// Bearer token sent with every call: a Quire API token
    /// (`quire-server token`) or an OIDC/JWT token. Prefer the
    /// environment variable, which stays out of the process list.
    #[arg(long, env = "QUIRE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum KeyKind {
    /// A log key, Ed25519.
    LogEd25519,
    /// A log key, ECDSA P-256.
    LogP256,
    /// A witness key (cosignature/v1, Ed25519).
    Witness,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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
pub(crate) enum AuditCmd {
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
