//! `quire event …`: add audit events to a log in event mode and read them
//! back, verified.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Subcommand;
use quire_client::events::{from_json, from_words, sealed, verify_event, Submission};
use quire_client::rpc::EventsRpc;

use crate::{endpoint, print, read_limited, trust_of, write_file, Failure, Net, Trust};

/// Largest payload file (the server's limit).
const MAX_PAYLOAD_FILE: u64 = 256 * 1024;
/// Longest line of a JSON-lines file of events.
const MAX_LINE: u64 = 1 << 20;
/// Longest line (or file) of records to import: a `CloudTrail` log file is
/// one JSON document.
const MAX_IMPORT_LINE: u64 = 64 << 20;
/// Events sent in one request.
const BATCH: usize = 500;

#[derive(Subcommand)]
#[allow(clippy::doc_markdown)] // the doc comments are the CLI's help text
pub(crate) enum EventCmd {
    /// Add an event: `type=auth.login actor=alice action=login
    /// outcome=failure resource=… source=… occurred_ms=… attr.NAME=…
    /// payload=TEXT|@FILE`; or many from --file, one JSON object a line
    /// (the same fields; `attributes` an object; `payload` any JSON).
    Add {
        /// The event's fields, as field=value.
        words: Vec<String>,
        /// A JSON-lines file of events (- for stdin), sent in batches.
        #[arg(long, conflicts_with = "words")]
        file: Option<PathBuf>,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Import records teams already produce, one event each, the record
    /// as its payload: Kubernetes audit events (the API server's JSON
    /// lines), AWS CloudTrail (log files, or a record a line), OCSF API
    /// Activity (JSON lines). FILE or - for stdin.
    Import {
        /// k8s, cloudtrail or ocsf.
        #[arg(long)]
        format: String,
        /// The records.
        file: PathBuf,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Erase an event's payload (the admin role): the log appends an
    /// erasure event naming it, the reason and you; the payload leaves the
    /// disk, the envelope and every proof stay.
    Erase {
        /// The event's index.
        index: u64,
        /// Why (recorded in the erasure event).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
    /// Show an event: its envelope and payload, verified against the
    /// log's key (--log-key) when given.
    Get {
        /// The event's index.
        index: u64,
        /// Write its payload to this file instead of printing it.
        #[arg(long)]
        payload_out: Option<PathBuf>,
        #[command(flatten)]
        net: Net,
        #[command(flatten)]
        trust: Trust,
    },
}

pub(crate) async fn event(json: bool, cmd: EventCmd) -> Result<(), Failure> {
    match cmd {
        EventCmd::Add {
            words,
            file,
            net,
            trust,
        } => match file {
            Some(f) => {
                let each = |bytes: &[u8]| {
                    let v: serde_json::Value =
                        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
                    Ok(vec![from_json(&v)?])
                };
                add_lines(json, &f, MAX_LINE, each, &net, &trust).await
            }
            None => add_one(json, &words, &net, &trust).await,
        },
        EventCmd::Import {
            format,
            file,
            net,
            trust,
        } => {
            let format = quire_client::import::Format::parse(&format)
                .map_err(|e| Failure::Input(format!("--format: {e}")))?;
            let each = |bytes: &[u8]| quire_client::import::events(format, bytes);
            add_lines(json, &file, MAX_IMPORT_LINE, each, &net, &trust).await
        }
        EventCmd::Erase {
            index,
            reason,
            net,
            trust,
        } => erase(json, index, &reason, &net, &trust).await,
        EventCmd::Get {
            index,
            payload_out,
            net,
            trust,
        } => get(json, index, payload_out, &net, &trust).await,
    }
}

async fn erase(
    json: bool,
    index: u64,
    reason: &str,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    let mut rpc = EventsRpc::connect(&endpoint(net)).await?;
    let origin = trust.origin.clone().unwrap_or_default();
    let r = rpc.erase(&origin, index, reason).await?;
    let events = sealed(&r.events).map_err(|e| Failure::Verify(e.to_string()))?;
    let Some((at, env, _)) = events.first() else {
        return Err(Failure::Verify(
            "the log answered with no erasure event".into(),
        ));
    };
    let erasure = quire_client::events::check_erasure(index, *at, env)
        .map_err(|e| Failure::Verify(e.to_string()))?;
    print(
        json,
        &format!(
            "the payload of event {index} is erased by event {at} (asked by {}: {})",
            erasure.by, erasure.reason
        ),
        &serde_json::json!({"index": index.to_string(), "erased_by": at.to_string(),
            "by": erasure.by, "reason": erasure.reason}),
    );
    Ok(())
}

async fn add_one(json: bool, words: &[String], net: &Net, trust: &Trust) -> Result<(), Failure> {
    if words.is_empty() {
        return Err(Failure::Input(format!(
            "give the event as field=value words ({}), or --file",
            quire_client::events::FIELDS
        )));
    }
    let s = from_words(words, |f| {
        read_limited(std::path::Path::new(f), MAX_PAYLOAD_FILE, "payload")
            .map_err(|e| e.message().to_owned())
    })
    .map_err(Failure::Input)?;
    let mut rpc = EventsRpc::connect(&endpoint(net)).await?;
    let origin = trust.origin.clone().unwrap_or_default();
    let r = rpc.add(&origin, vec![s.to_wire()]).await?;
    let events = sealed(&r.events).map_err(|e| Failure::Verify(e.to_string()))?;
    let Some((index, env, leaf)) = events.first() else {
        return Err(Failure::Verify("the log answered with no event".into()));
    };
    print(
        json,
        &format!(
            "event {index} in log {}, logged at {} ms by {}; leaf hash {leaf}\nnot verified yet: `quire event get {index} --log-key KEY` checks it against the log's key",
            r.log, env.log_time_ms, env.submitter
        ),
        &serde_json::json!({
            "index": index.to_string(), "log": r.log, "log_time_ms": env.log_time_ms.to_string(),
            "submitter": env.submitter, "leaf_hash": leaf.to_hex(),
            "envelope": String::from_utf8_lossy(&r.events[0].envelope), "verified": false,
        }),
    );
    Ok(())
}

/// Reads one line of at most `max` bytes; `None` at the end.
fn next_line<R: BufRead>(r: &mut R, n: usize, max: u64) -> Result<Option<Vec<u8>>, Failure> {
    let mut line = Vec::new();
    let read = std::io::Read::take(r, max + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| Failure::Input(format!("line {n}: {e}")))?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() as u64 > max {
        return Err(Failure::Input(format!(
            "line {n} is over the {max}-byte limit"
        )));
    }
    Ok(Some(line))
}

/// Sends the events that `each` makes of every line of `file` (- for
/// stdin, each line at most `max` bytes), in batches, with progress on a
/// terminal.
async fn add_lines(
    json: bool,
    file: &std::path::Path,
    max: u64,
    each: impl Fn(&[u8]) -> Result<Vec<Submission>, String>,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    let input: Box<dyn std::io::Read> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            quire_host::open_regular(file, false)
                .map_err(|e| Failure::Input(format!("events file: {e}")))?,
        )
    };
    let mut reader = std::io::BufReader::new(input);
    let mut rpc = EventsRpc::connect(&endpoint(net)).await?;
    let origin = trust.origin.clone().unwrap_or_default();
    let progress = std::io::stderr().is_terminal() && !json;
    let (mut added, mut first, mut last, mut log) = (0u64, None, 0u64, String::new());
    let mut pending: Vec<Submission> = Vec::new();
    let mut n = 0usize;
    let mut done = false;
    while !done || !pending.is_empty() {
        while !done && pending.len() < BATCH {
            n += 1;
            let Some(line) = next_line(&mut reader, n, max)? else {
                done = true;
                break;
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            pending.extend(each(&line).map_err(|e| Failure::Input(format!("line {n}: {e}")))?);
        }
        let batch: Vec<Submission> = pending.drain(..pending.len().min(BATCH)).collect();
        if batch.is_empty() {
            continue;
        }
        let r = rpc
            .add(&origin, batch.iter().map(Submission::to_wire).collect())
            .await
            .map_err(|e| {
                Failure::from(e).with_context(&format!(
                    "after {added} events were added (from lines before {n})"
                ))
            })?;
        let events = sealed(&r.events).map_err(|e| Failure::Verify(e.to_string()))?;
        first = first.or(events.first().map(|e| e.0));
        last = events.last().map_or(last, |e| e.0);
        added += events.len() as u64;
        log = r.log;
        if progress {
            eprint!("\r{added} events added");
            let _ = std::io::stderr().flush();
        }
    }
    if progress {
        eprintln!();
    }
    let range = first.map_or_else(|| "none".to_owned(), |f| format!("{f} to {last}"));
    print(
        json,
        &format!("{added} events added to log {log}: indexes {range}"),
        &serde_json::json!({"added": added.to_string(), "log": log,
            "first": first.map(|f| f.to_string()), "last": first.map(|_| last.to_string())}),
    );
    Ok(())
}

async fn get(
    json: bool,
    index: u64,
    payload_out: Option<PathBuf>,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    let mut rpc = EventsRpc::connect(&endpoint(net)).await?;
    let origin = trust.origin.clone().unwrap_or_default();
    let r = rpc.get(&origin, index).await?;
    let (envelope, payload, verified) = if trust.log_keys.is_empty() {
        let env = quire_core::event::Envelope::decode(&r.envelope)
            .map_err(|e| Failure::Verify(format!("event {index}: {e}")))?;
        let p = quire_client::events::check_payload(index, &env, &r.payload, &r.salt)
            .map_err(|e| Failure::Verify(e.to_string()))?;
        (env, p, None)
    } else {
        let t = trust_of(trust, (!origin.is_empty()).then_some(origin.as_str()))?;
        let v = verify_event(&t, &r).map_err(|e| Failure::Verify(e.to_string()))?;
        let size = v.checkpoint.size();
        (v.envelope, v.payload, Some(size))
    };
    // An erased payload: the erasure event, checked as this one was.
    let erased = match r.erased_by {
        Some(at) => {
            let e = rpc.get(&origin, at).await?;
            let env = if trust.log_keys.is_empty() {
                quire_core::event::Envelope::decode(&e.envelope)
                    .map_err(|err| Failure::Verify(format!("event {at}: {err}")))?
            } else {
                let t = trust_of(trust, (!origin.is_empty()).then_some(origin.as_str()))?;
                verify_event(&t, &e)
                    .map_err(|err| Failure::Verify(err.to_string()))?
                    .envelope
            };
            let erasure = quire_client::events::check_erasure(index, at, &env)
                .map_err(|err| Failure::Verify(err.to_string()))?;
            Some((at, erasure))
        }
        None => None,
    };
    let text = String::from_utf8_lossy(&r.envelope).into_owned();
    if let (Some(out), Some(p)) = (&payload_out, &payload) {
        write_file(out, p)?;
    }
    let payload_words = match (&payload, &payload_out) {
        (None, _) if erased.is_some() => erased.as_ref().map_or_else(String::new, |(at, e)| {
            format!(
                "payload: erased by event {at} (asked by {}: {})",
                e.by, e.reason
            )
        }),
        (None, _) if envelope.payload.is_some() => "payload: not shown".to_owned(),
        (None, _) => "payload: none".to_owned(),
        (Some(p), Some(out)) => format!("payload: {} bytes written to {}", p.len(), out.display()),
        (Some(p), None) => format!("payload: {}", String::from_utf8_lossy(p)),
    };
    let verdict = match verified {
        Some(size) if payload.is_some() => format!("verified: included in the log's checkpoint of size {size}; the payload is the one its envelope commits to"),
        Some(size) => format!("verified: included in the log's checkpoint of size {size}"),
        None => "not verified: give --log-key to check it against the log's key".to_owned(),
    };
    print(
        json,
        &format!("event {index}\n{text}\n{payload_words}\n{verdict}"),
        &serde_json::json!({
            "index": index.to_string(), "envelope": text,
            "payload": payload.as_ref().map(|p| String::from_utf8_lossy(p).into_owned()),
            "verified": verified.is_some(),
            "erased_by": erased.as_ref().map(|(at, _)| at.to_string()),
            "erasure_reason": erased.as_ref().map(|(_, e)| e.reason.clone()),
            "checkpoint_size": verified.map(|s| s.to_string()),
        }),
    );
    Ok(())
}
