//! Collecting witness cosignatures for a log's checkpoints.
//!
//! In rounds: a round takes the latest signed checkpoint and sends it to
//! every witness that is free, each with a consistency proof from the size
//! that witness last cosigned (learnt from a C2SP 409 answer and retried).
//! A round ends as soon as the quorum has cosigned or every witness has
//! answered or failed; then the next round takes the newest checkpoint. A
//! witness still busy (slow or dead) joins the round after its call ends, so
//! it costs its own timeout and nothing more, and integration never waits
//! for any of this: the sequencer runs on its own thread.
//!
//! A checkpoint with the quorum of cosignatures is published as the
//! *witnessed* checkpoint; cosignatures that arrive later for it are added.

//!
//! Files: `policy` (who witnesses, quorum, fail mode), [`transport`] (the
//! gRPC and C2SP `tlog-witness` HTTP wires), [`check`] (the start-up check
//! before the first signature); this file is the collection.

pub mod check;
mod policy;
pub mod transport;

use std::sync::{Arc, Mutex};

use quire_core::{prove_consistency, Note, NoteSignature, VerifierKey};
use tokio::sync::{watch, Notify};

pub use policy::{FailMode, WitnessEndpoint, WitnessPolicy, WitnessProtocol};
use transport::{Answer, GrpcWitness, HttpWitness, WitnessTransport};

use crate::log::{Latest, Log};
use crate::store::Storage;

/// A witnessed answer was asked for under fail closed, and the quorum did
/// not come in time; says which checkpoint and quorum.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoQuorum(pub String);

/// A checkpoint with cosignatures.
#[derive(Clone, Debug)]
pub struct Witnessed {
    /// Tree size.
    pub size: u64,
    /// The log's note with the cosignature lines appended.
    pub note: Vec<u8>,
    /// The cosignature lines alone (what storage keeps beside the
    /// checkpoint).
    pub lines: Vec<u8>,
    /// Cosignatures on it.
    pub cosignatures: usize,
}

struct Round {
    id: u64,
    latest: Arc<Latest>,
    sigs: Vec<Option<NoteSignature>>,
    finished: usize,
    published: bool,
    /// The coordinator was told the round is over (once).
    ended: bool,
}

/// A checkpoint and the cosignature of each witness (by position).
type Cosigned = (Arc<Latest>, Vec<Option<NoteSignature>>);

struct Shared {
    policy: WitnessPolicy,
    origin: String,
    round: Mutex<Option<Round>>,
    /// The newest published witnessed checkpoint and its cosignatures.
    witnessed_sigs: Mutex<Option<Cosigned>>,
    witnessed: watch::Sender<Option<Arc<Witnessed>>>,
    round_done: Notify,
    target: watch::Sender<Option<(u64, Arc<Latest>)>>,
}

/// A task of the collection, and whether shutdown aborts it.
type Task = (tokio::task::JoinHandle<()>, bool);

/// A log's witness collection. Cheap to clone.
#[derive(Clone)]
pub struct Witnessing {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<Task>>>,
}

fn note_with(latest: &Latest, sigs: &[Option<NoteSignature>]) -> Witnessed {
    let mut lines = Vec::new();
    let mut n = 0;
    for s in sigs.iter().flatten() {
        lines.extend_from_slice(s.to_line().as_bytes());
        n += 1;
    }
    let mut note = latest.stored.note.clone();
    note.extend_from_slice(&lines);
    Witnessed {
        size: latest.stored.size,
        note,
        lines,
        cosignatures: n,
    }
}

/// The newest checkpoint whose kept cosignatures ([`Storage::keep_cosignatures`])
/// still make the quorum: each line verified again with the configured
/// witness keys, so what was kept is never trusted as it is.
fn kept<S: Storage>(log: &Log<S>, policy: &WitnessPolicy) -> Option<Cosigned> {
    use crate::store::StorageReader as _;
    let read = || -> Result<Option<Cosigned>, String> {
        let r = log.store().reader().map_err(|e| e.to_string())?;
        let Some((size, lines)) = r.latest_cosignatures().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let Some(stored) = r.checkpoint_at(size).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let mark = crate::highwater::Mark::from_note(&stored.note)?;
        let text = String::from_utf8_lossy(&lines);
        let lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
        let sigs: Vec<Option<NoteSignature>> = policy
            .witnesses
            .iter()
            .map(|w| verify_cosignature(&stored.note, &lines, &w.key).ok())
            .collect();
        if sigs.iter().flatten().count() < policy.quorum.max(1) {
            return Ok(None);
        }
        Ok(Some((
            Arc::new(Latest {
                stored,
                root: mark.root,
            }),
            sigs,
        )))
    };
    match read() {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(log = %log.origin(), error = %e, "kept cosignatures not read; collecting again");
            None
        }
    }
}

/// Keeps every published witnessed checkpoint's cosignatures in storage,
/// until `stop`.
async fn keep<S: Storage>(
    log: Log<S>,
    mut witnessed: watch::Receiver<Option<Arc<Witnessed>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: Option<(u64, usize)> = None;
    loop {
        let current = witnessed.borrow_and_update().clone();
        if let Some(w) = current.filter(|w| last != Some((w.size, w.cosignatures))) {
            last = Some((w.size, w.cosignatures));
            let l = log.clone();
            let kept =
                tokio::task::spawn_blocking(move || l.store().keep_cosignatures(w.size, &w.lines))
                    .await;
            if let Ok(Err(e)) = kept {
                tracing::warn!(log = %log.origin(), error = %e, "cosignatures not kept");
            }
        }
        tokio::select! {
            changed = witnessed.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

impl Witnessing {
    /// Starts collecting for `log` (spawns tasks on the current runtime).
    ///
    /// # Errors
    /// A witness address that is not a valid URL.
    pub fn start<S: Storage>(
        log: &Log<S>,
        policy: WitnessPolicy,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, String> {
        // What was witnessed before a restart is served again at once, once
        // its cosignatures verify again.
        let before = kept(log, &policy);
        let (witnessed, _) = watch::channel(
            before
                .as_ref()
                .map(|(latest, sigs)| Arc::new(note_with(latest, sigs))),
        );
        let (target, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            origin: log.origin().to_owned(),
            round: Mutex::new(None),
            witnessed_sigs: Mutex::new(before),
            witnessed,
            round_done: Notify::new(),
            target,
            policy,
        });
        // No signature before the witnesses were asked what they hold.
        log.hold_signing("checking the witnesses before the first signature");
        let mut clients: Vec<Arc<dyn WitnessTransport>> = Vec::new();
        let mut tasks = Vec::new();
        for (i, w) in shared.policy.witnesses.iter().enumerate() {
            let timeout = shared.policy.timeout;
            let client: Arc<dyn WitnessTransport> = match w.protocol {
                WitnessProtocol::Grpc => Arc::new(GrpcWitness::new(&w.url, timeout)?),
                WitnessProtocol::Http => Arc::new(HttpWitness::new(&w.url, timeout)?),
            };
            clients.push(Arc::clone(&client));
            // A call to a witness may be in flight at shutdown: aborted
            // then (collection is best effort), not waited for.
            tasks.push((
                tokio::spawn(witness_task(
                    Arc::clone(&shared),
                    log.clone(),
                    i,
                    client,
                    stop.clone(),
                )),
                true,
            ));
        }
        tasks.push((
            tokio::spawn(check::check_at_start(
                log.clone(),
                shared.policy.clone(),
                clients,
            )),
            true,
        ));
        // These end at the stop by themselves; the keeper may be writing.
        tasks.push((
            tokio::spawn(keep(
                log.clone(),
                shared.witnessed.subscribe(),
                stop.clone(),
            )),
            false,
        ));
        tasks.push((
            tokio::spawn(coordinator(Arc::clone(&shared), log.subscribe(), stop)),
            false,
        ));
        Ok(Witnessing {
            shared,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// Waits until every task of this collection has ended (after the stop
    /// it was started with turned true): calls to witnesses still in flight
    /// are aborted, the rest end by themselves. Then none holds the log, and
    /// its storage can close.
    pub async fn finished(&self) {
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (t, abort) in tasks {
            if abort {
                t.abort();
            }
            let _ = t.await;
        }
    }

    /// The policy.
    pub fn policy(&self) -> &WitnessPolicy {
        &self.shared.policy
    }

    /// The newest witnessed checkpoint, if any reached the quorum yet.
    pub fn witnessed(&self) -> Option<Arc<Witnessed>> {
        self.shared.witnessed.borrow().clone()
    }

    /// A watch of the witnessed checkpoint.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Witnessed>>> {
        self.shared.witnessed.subscribe()
    }

    /// `latest` with the cosignatures collected for it so far (fail-open
    /// answers).
    pub fn partial(&self, latest: &Arc<Latest>) -> Witnessed {
        let round = self.shared.round.lock().ok();
        match round.as_ref().and_then(|r| r.as_ref()) {
            Some(r) if r.latest.stored.size == latest.stored.size => note_with(latest, &r.sigs),
            _ => note_with(latest, &[]),
        }
    }

    /// Waits until a witnessed checkpoint of at least `size` exists, up to
    /// the policy's wait. `None` when the wait ended first.
    pub async fn wait_for(&self, size: u64) -> Option<Arc<Witnessed>> {
        let mut rx = self.subscribe();
        let wait = async move {
            rx.wait_for(|w| w.as_ref().is_some_and(|w| w.size >= size))
                .await
                .ok()
                .and_then(|w| w.clone())
        };
        tokio::time::timeout(self.shared.policy.wait, wait)
            .await
            .ok()
            .flatten()
    }
}

/// Starts a round on the newest checkpoint whenever the previous one is over
/// and the log has signed something newer.
async fn coordinator(
    shared: Arc<Shared>,
    mut latest: watch::Receiver<Arc<Latest>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut id = 0u64;
    let mut last_size = None;
    loop {
        let current = Arc::clone(&latest.borrow_and_update());
        if last_size != Some(current.stored.size) {
            id += 1;
            last_size = Some(current.stored.size);
            let n = shared.policy.witnesses.len();
            if let Ok(mut r) = shared.round.lock() {
                *r = Some(Round {
                    id,
                    latest: Arc::clone(&current),
                    sigs: vec![None; n],
                    finished: 0,
                    published: false,
                    ended: false,
                });
            }
            let done = shared.round_done.notified();
            shared.target.send_replace(Some((id, current)));
            tokio::select! {
                () = done => {}
                _ = stop.changed() => return,
            }
        }
        tokio::select! {
            r = latest.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// Records one witness's answer for round `id`.
fn report(shared: &Shared, id: u64, latest: &Arc<Latest>, i: usize, sig: Option<NoteSignature>) {
    let quorum = shared.policy.quorum;
    let mut publish = None;
    let mut done = false;
    if let Ok(mut guard) = shared.round.lock() {
        if let Some(r) = guard.as_mut().filter(|r| r.id == id) {
            r.finished += 1;
            r.sigs[i].clone_from(&sig);
            let have = r.sigs.iter().flatten().count();
            if have >= quorum && quorum > 0 {
                publish = Some(r.sigs.clone());
                if !r.published {
                    r.published = true;
                    let ms = crate::log::now_ms().saturating_sub(latest.stored.signed_at_ms);
                    #[allow(clippy::cast_precision_loss)]
                    metrics::histogram!("quire_witnessed_seconds", "log" => shared.origin.clone())
                        .record(ms as f64 / 1000.0);
                }
            }
            if !r.ended && (r.published || r.finished == r.sigs.len()) {
                r.ended = true;
                done = true;
            }
        }
    }
    // A late cosignature for the published checkpoint is added to it.
    if publish.is_none() {
        if let (Some(sig), Ok(mut w)) = (sig, shared.witnessed_sigs.lock()) {
            if let Some((l, sigs)) = w.as_mut() {
                if l.stored.size == latest.stored.size && l.stored.note == latest.stored.note {
                    sigs[i] = Some(sig);
                    let n = note_with(l, sigs);
                    shared.witnessed.send_replace(Some(Arc::new(n)));
                }
            }
        }
    }
    if let Some(sigs) = publish {
        let n = note_with(latest, &sigs);
        if let Ok(mut w) = shared.witnessed_sigs.lock() {
            *w = Some((Arc::clone(latest), sigs));
        }
        shared.witnessed.send_if_modified(|cur| {
            if cur.as_ref().is_some_and(|c| c.size > n.size) {
                return false;
            }
            *cur = Some(Arc::new(n));
            true
        });
    }
    if done {
        shared.round_done.notify_one();
    }
}

async fn witness_task<S: Storage>(
    shared: Arc<Shared>,
    log: Log<S>,
    i: usize,
    client: Arc<dyn WitnessTransport>,
    mut stop: watch::Receiver<bool>,
) {
    let mut target = shared.target.subscribe();
    let mut known: Option<u64> = None;
    let mut last_id = 0;
    loop {
        let next = target.borrow_and_update().clone();
        if let Some((id, latest)) = next.filter(|(id, _)| *id != last_id) {
            last_id = id;
            let sig = push(&shared, &log, i, client.as_ref(), &latest, &mut known).await;
            let sig = match sig {
                Ok(s) => Some(s),
                Err(e) => {
                    let url = &shared.policy.witnesses[i].url;
                    tracing::warn!(log = %shared.origin, witness = %url, size = latest.stored.size, error = %e, "no cosignature");
                    metrics::counter!("quire_witness_failures_total", "log" => shared.origin.clone(), "witness" => url.clone()).increment(1);
                    None
                }
            };
            report(&shared, id, &latest, i, sig);
            continue;
        }
        tokio::select! {
            r = target.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// Sends `latest` to witness `i` with a proof from the size it holds,
/// learning that size from a conflict answer; returns its verified
/// cosignature.
async fn push<S: Storage>(
    shared: &Shared,
    log: &Log<S>,
    i: usize,
    client: &dyn WitnessTransport,
    latest: &Latest,
    known: &mut Option<u64>,
) -> Result<NoteSignature, String> {
    let key = &shared.policy.witnesses[i].key;
    let size = latest.stored.size;
    for _ in 0..3 {
        let old = known.unwrap_or(0);
        if old > size {
            return Err(format!("the witness holds size {old}, newer than {size}"));
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            // Read on the blocking pool: never a database round trip on one
            // of the runtime's workers.
            let l = log.clone();
            tokio::task::spawn_blocking(move || {
                let reader = l.store().reader().map_err(|e| e.to_string())?;
                prove_consistency(&reader, old, size).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| format!("reading the consistency proof: {e}"))??
        };
        match client
            .add_checkpoint(old, &proof, &latest.stored.note)
            .await
        {
            Ok(Answer::Cosigned(lines)) => {
                *known = Some(size);
                return verify_cosignature(&latest.stored.note, &lines, key);
            }
            Ok(Answer::Conflict(theirs)) => {
                if theirs > log.latest().stored.size {
                    // The witness cosigned more than this log has: its
                    // storage is behind what it published.
                    let url = &shared.policy.witnesses[i].url;
                    let verdict = check::judge_claim(log, url, client, theirs).await;
                    return Err(format!(
                        "the witness holds size {theirs}, beyond this log's {size}: {verdict:?}"
                    ));
                }
                if *known == Some(theirs) {
                    return Err(format!("conflict at size {theirs}, again"));
                }
                *known = Some(theirs);
            }
            Err(e) => {
                *known = None;
                return Err(e.to_string());
            }
        }
    }
    Err("the witness's size kept changing".into())
}

/// The cosignature by `key` among `lines`, verified over the checkpoint.
fn verify_cosignature(
    note: &[u8],
    lines: &[String],
    key: &VerifierKey,
) -> Result<NoteSignature, String> {
    let parsed = Note::parse(note).map_err(|e| e.to_string())?;
    quire_core::cosignature::verify_answer(parsed.text(), lines, key)
        .map(|(sig, _)| sig)
        .map_err(|e| e.to_string())
}

impl Witnessing {
    /// The checkpoint a witnessed write answers with, covering `index`: the
    /// witnessed one, or after the wait the signed one with the cosignatures
    /// it has (fail open) or UNAVAILABLE (fail closed). Returns its size and
    /// note.
    ///
    /// # Errors
    /// UNAVAILABLE under fail closed when the quorum did not come in time.
    pub async fn for_write(
        &self,
        latest: &Arc<Latest>,
        index: u64,
    ) -> Result<(u64, Vec<u8>), NoQuorum> {
        let p = &self.shared.policy;
        if let Some(w) = self.wait_for(index.saturating_add(1)).await {
            return Ok((w.size, w.note.clone()));
        }
        match p.fail {
            FailMode::Open => {
                let w = self.partial(latest);
                Ok((w.size, w.note))
            }
            FailMode::Closed => Err(NoQuorum(format!(
                "entry {index} is stored and signed at size {}, but no checkpoint covering it \
                 reached the witness quorum of {} of {} within {} ms (fail closed)",
                latest.stored.size,
                p.quorum,
                p.witnesses.len(),
                p.wait.as_millis()
            ))),
        }
    }

    /// The checkpoint a witnessed read answers with: the newest witnessed
    /// one (waiting for the first, up to the policy's wait), else as
    /// [`Self::for_write`].
    ///
    /// # Errors
    /// UNAVAILABLE under fail closed when no checkpoint has the quorum.
    pub async fn for_read(&self, latest: &Arc<Latest>) -> Result<Vec<u8>, NoQuorum> {
        if let Some(w) = self.witnessed() {
            return Ok(w.note.clone());
        }
        let p = &self.shared.policy;
        if let Some(w) = self.wait_for(0).await {
            return Ok(w.note.clone());
        }
        match p.fail {
            FailMode::Open => Ok(self.partial(latest).note),
            FailMode::Closed => Err(NoQuorum(format!(
                "no checkpoint has reached the witness quorum of {} of {} yet (fail closed)",
                p.quorum,
                p.witnesses.len()
            ))),
        }
    }

    /// The notes of the witnessed checkpoints (the current one first) until
    /// `stopping` turns true or the receiver goes away.
    pub fn watch(
        &self,
        mut stopping: watch::Receiver<bool>,
    ) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
        let mut rx = self.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let current = rx.borrow_and_update().clone();
                if let Some(w) = current {
                    if tx.send(w.note.clone()).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        });
        out
    }
}
