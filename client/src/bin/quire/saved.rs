//! The commands that keep and check saved material: `consistency` (chains
//! of checkpoints), `entries` (dumps), `audit` (offline verdicts) and
//! `monitor` (following a log).

use std::path::PathBuf;

use quire_client::monitor::{step, MonitorError, MonitorState};
use quire_core::Note;

use super::{
    connect_trusted, latest_verified, print, read_limited, trust_of, write_file, AuditCmd, Failure,
    Net, Trust,
};

/// Largest checkpoint note file read (the signed-note limit).
const MAX_NOTE_FILE: u64 = 64 * 1024;

fn load_note(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    read_limited(path, MAX_NOTE_FILE, "checkpoint")
}

pub(crate) async fn consistency(
    json: bool,
    from: &std::path::Path,
    chain: Option<&PathBuf>,
    save: Option<&PathBuf>,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    use std::io::Write;
    let old_bytes = load_note(from)?;
    let old_note = Note::parse(&old_bytes)
        .map_err(|e| Failure::Input(format!("checkpoint {}: {e}", from.display())))?;
    let (mut rpc, t) = connect_trusted(net, trust).await?;
    let (old, _) = t
        .verify_note(&old_note)
        .map_err(|e| Failure::Verify(format!("saved checkpoint {}: {e}", from.display())))?;
    let (new_note, new) = latest_verified(&mut rpc, &t).await?;
    if new.size() < old.size() {
        return Err(Failure::Verify(format!(
            "the log's checkpoint (size {}) is smaller than the saved one (size {}): a rollback",
            new.size(),
            old.size()
        )));
    }
    let proof = if new.size() == old.size() {
        if new.root() != old.root() {
            return Err(Failure::Verify(format!(
                "size {} signed with two roots: a fork",
                new.size()
            )));
        }
        Vec::new()
    } else {
        rpc.consistency(&t.origin, old.size(), new.size()).await?
    };
    quire_core::verify_consistency(old.size(), new.size(), &proof, old.root(), new.root())
        .map_err(|e| {
            Failure::Verify(format!(
                "size {} does not extend size {}: {e}",
                new.size(),
                old.size()
            ))
        })?;
    if let Some(path) = chain {
        let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Failure::Input(format!("chain {}: {e}", path.display())))?;
        let mut text = String::new();
        if fresh {
            let first = quire_client::audit::ChainLink {
                checkpoint: old_note.to_bytes(),
                proof: vec![],
            };
            text.push_str(&first.to_json_line());
            text.push('\n');
        }
        let link = quire_client::audit::ChainLink {
            checkpoint: new_note.to_bytes(),
            proof: proof.clone(),
        };
        text.push_str(&link.to_json_line());
        text.push('\n');
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Failure::Input(format!("chain {}: {e}", path.display())))?;
    }
    if let Some(path) = save {
        write_file(path, &new_note.to_bytes())?;
    }
    print(
        json,
        &format!(
            "OK: size {} extends size {} ({} proof hashes)",
            new.size(),
            old.size(),
            proof.len()
        ),
        &serde_json::json!({"consistent": true, "old_size": old.size().to_string(), "new_size": new.size().to_string(), "proof": proof.iter().map(quire_core::Hash::to_base64).collect::<Vec<_>>()}),
    );
    Ok(())
}

pub(crate) async fn entries(
    json: bool,
    start: u64,
    end: Option<u64>,
    out: Option<&PathBuf>,
    checkpoint_out: Option<&PathBuf>,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    use base64::Engine as _;
    use std::io::Write;
    let (mut rpc, t) = connect_trusted(net, trust).await?;
    let (note, cp) = latest_verified(&mut rpc, &t).await?;
    let end = end.unwrap_or(cp.size());
    if end > cp.size() || start > end {
        return Err(Failure::Input(format!(
            "range {start}..{end} is not within the tree of size {}",
            cp.size()
        )));
    }
    let mut sink: Box<dyn Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| Failure::Input(format!("{}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut written = 0u64;
    let show_progress = out.is_some() && !json;
    rpc.entries(&t.origin, start, end, |i, e| {
        written += 1;
        if show_progress && written.is_multiple_of(65_536) {
            eprintln!("{} of {} entries written", i + 1 - start, end - start);
        }
        writeln!(sink, "{}", b64.encode(e))
            .map_err(|e| quire_client::rpc::RpcError::Input(format!("writing entries: {e}")))
    })
    .await?;
    sink.flush()
        .map_err(|e| Failure::Input(format!("writing entries: {e}")))?;
    drop(sink);
    if let Some(p) = checkpoint_out {
        write_file(p, &note.to_bytes())?;
    }
    if out.is_some() || json {
        print(
            json,
            &format!(
                "{written} entries ({start}..{end}) of a tree of size {}",
                cp.size()
            ),
            &serde_json::json!({"entries": written.to_string(), "start": start.to_string(), "end": end.to_string(), "tree_size": cp.size().to_string()}),
        );
    }
    Ok(())
}

/// A saved file to audit, buffered.
fn open(p: &std::path::Path) -> Result<std::io::BufReader<std::fs::File>, Failure> {
    std::fs::File::open(p)
        .map(std::io::BufReader::new)
        .map_err(|e| Failure::Input(format!("{}: {e}", p.display())))
}

/// An audit's failure as the CLI's: malformed material is bad input,
/// material that does not verify is a failed verification.
#[allow(clippy::needless_pass_by_value)] // the shape `map_err` takes
fn fail(e: quire_client::audit::AuditError) -> Failure {
    use quire_client::audit::AuditError;
    match e {
        AuditError::Malformed { .. } => Failure::Input(format!("FAILED: {e}")),
        AuditError::Failed { .. } => Failure::Verify(format!("FAILED: {e}")),
    }
}

pub(crate) fn audit(json: bool, cmd: AuditCmd) -> Result<(), Failure> {
    use quire_client::audit::{audit_chain, audit_entries, audit_evidence};
    match cmd {
        AuditCmd::Chain { file, trust } => {
            let t = trust_of(&trust, None)?;
            let cp = audit_chain(open(&file)?, &t).map_err(fail)?;
            print(
                json,
                &format!(
                    "OK: the chain is signed and consistent up to size {}, root {}",
                    cp.size(),
                    cp.root()
                ),
                &serde_json::json!({"verified": true, "tree_size": cp.size().to_string(), "root": cp.root().to_base64()}),
            );
        }
        AuditCmd::Entries {
            dump,
            checkpoint,
            trust,
        } => {
            let t = trust_of(&trust, None)?;
            let note = load_note(&checkpoint)?;
            let cp = audit_entries(open(&dump)?, &note, &t).map_err(fail)?;
            print(
                json,
                &format!(
                    "OK: the {} entries rebuild the signed root {}",
                    cp.size(),
                    cp.root()
                ),
                &serde_json::json!({"verified": true, "tree_size": cp.size().to_string(), "root": cp.root().to_base64()}),
            );
        }
        AuditCmd::Index {
            dump,
            checkpoint,
            trust,
        } => audit_index(json, &dump, &checkpoint, &trust)?,
        AuditCmd::Evidence { file, trust } => {
            let t = trust_of(&trust, None)?;
            let bytes = read_limited(&file, 256 * 1024, "evidence")?;
            let conflict = audit_evidence(&bytes, &t).map_err(fail)?;
            let (text, detail) = match &conflict {
                quire_core::Conflict::SameSize {
                    size,
                    first_root,
                    second_root,
                } => (
                    format!(
                        "PROVEN: the log signed two checkpoints of size {size} with different roots, {first_root} and {second_root}; both signatures verify with the log's key"
                    ),
                    serde_json::json!({"kind": "same-size", "size": size.to_string(), "first_root": first_root.to_base64(), "second_root": second_root.to_base64()}),
                ),
                quire_core::Conflict::Inconsistent {
                    old,
                    new,
                    signed_old_root,
                    implied_old_root,
                } => (
                    format!(
                        "PROVEN: the log signed size {old} with root {signed_old_root}, and size {new} whose tree has root {implied_old_root} at size {old} (the consistency path in the file rebuilds the signed root of {new}); both signatures verify with the log's key"
                    ),
                    serde_json::json!({"kind": "inconsistent", "old_size": old.to_string(), "new_size": new.to_string(), "signed_old_root": signed_old_root.to_base64(), "implied_old_root": implied_old_root.to_base64()}),
                ),
            };
            // Proven misbehaviour: the README's rule, exit 1.
            if json {
                println!(
                    "{}",
                    serde_json::json!({"proven": true, "conflict": detail})
                );
            } else {
                println!("{text}");
            }
            return Err(Failure::Proven);
        }
    }
    Ok(())
}

pub(crate) struct MonitorOpts {
    pub(crate) state: PathBuf,
    pub(crate) evidence_out: PathBuf,
    pub(crate) once: bool,
    pub(crate) interval: std::time::Duration,
    pub(crate) keep_going: bool,
}

pub(crate) async fn monitor(
    json: bool,
    o: &MonitorOpts,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    let (mut rpc, t) = connect_trusted(net, trust).await?;
    let mut state = MonitorState::load(&o.state).map_err(|e| Failure::Input(e.to_string()))?;
    let mut failed = None;
    loop {
        let progress = |done: u64, end: u64| {
            if !json {
                eprintln!("checked {done} of {end} entries");
            }
        };
        match step(&mut rpc, &t, &state, progress).await {
            Ok((updated, cp)) => {
                let old = state.range.size();
                let changed = updated.range.size() != old || state.checkpoint.is_none();
                if changed {
                    updated
                        .save(&o.state)
                        .map_err(|e| Failure::Input(e.to_string()))?;
                }
                // Say what was checked: always once, and on news when following.
                if changed || o.once {
                    let new = cp.size() - old;
                    let what = if changed {
                        format!(
                            "{new} new entries downloaded and hashed into the saved tree, the checkpoint's signature and its consistency with size {old} checked; state saved to {}",
                            o.state.display()
                        )
                    } else {
                        "no new entries since the saved state; the latest checkpoint's signature and its consistency with the saved one checked".to_owned()
                    };
                    print(
                        json,
                        &format!("OK: size {}, root {}: {what}", cp.size(), cp.root()),
                        &serde_json::json!({"verified": true, "tree_size": cp.size().to_string(), "root": cp.root().to_base64(), "new_entries": new.to_string(), "previous_size": old.to_string()}),
                    );
                }
                state = updated;
            }
            Err(MonitorError::Rpc(e)) if !o.keep_going => return Err(e.into()),
            Err(e) => {
                if let MonitorError::Fork(ev) = &e {
                    write_file(&o.evidence_out, ev.to_json().as_bytes())?;
                }
                let msg = match &e {
                    MonitorError::Fork(_) => format!(
                        "MISBEHAVIOUR: {e}; evidence written to {}",
                        o.evidence_out.display()
                    ),
                    _ => format!("MISBEHAVIOUR: {e}"),
                };
                if !o.keep_going {
                    return Err(Failure::Verify(msg));
                }
                eprintln!("quire: {msg}");
                failed = Some(msg);
            }
        }
        if o.once {
            break;
        }
        tokio::time::sleep(o.interval).await;
    }
    failed.map_or(Ok(()), |m| Err(Failure::Verify(m)))
}

/// `quire audit index`: the dump against its checkpoint, then the event
/// indexes recomputed from its envelopes.
fn audit_index(
    json: bool,
    dump: &std::path::Path,
    checkpoint: &std::path::Path,
    trust: &Trust,
) -> Result<(), Failure> {
    let t = trust_of(trust, None)?;
    let note = load_note(checkpoint)?;
    let mut index = quire_client::index_audit::IndexAudit::new();
    let cp = quire_client::audit::audit_entries_with(open(dump)?, &note, &t, |i, e| {
        index.add(i, e);
    })
    .map_err(fail)?;
    let v = index.finish();
    if v.problem_count > 0 {
        return Err(Failure::Verify(format!(
            "{} problems in the indexes of the {} events (the first {}):\n{}",
            v.problem_count,
            v.events,
            v.problems.len(),
            v.problems.join("\n")
        )));
    }
    print(
        json,
        &format!(
            "OK: the {} events rebuild the signed root; their links, log times and {} map heads ({} keys) agree with the envelopes",
            v.events, v.heads, v.keys
        ),
        &serde_json::json!({
            "verified": true, "tree_size": cp.size().to_string(),
            "events": v.events.to_string(), "keys": v.keys, "map_heads": v.heads.to_string(),
        }),
    );
    Ok(())
}
