//! The witness's durable state in redb: per log, the latest checkpoint it
//! cosigned; and the split-view evidence it holds.
//!
//! One writer thread owns every write. It takes requests in batches, runs
//! [`check::decide`] for each against the stored state (and the earlier
//! requests of the same batch), writes the survivors and commits once,
//! durably, before it answers any of them: check and update are one atomic
//! step (C2SP tlog-witness), and a batch shares one fsync.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use quire_core::{Hash, SplitViewEvidence, VerifierKey};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::check::{self, AddError, Decision, Latest, Verified};

/// origin → size (8 bytes, big-endian) ‖ root (32) ‖ note.
const LATEST: TableDefinition<&str, &[u8]> = TableDefinition::new("latest");
/// SHA-256 of the evidence JSON → [`EvidenceRecord`] JSON.
const EVIDENCE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("evidence");

/// Most requests decided in one transaction.
const MAX_BATCH: usize = 512;
/// Requests waiting for the writer before callers are turned away.
const QUEUE: usize = 16_384;

/// Evidence as the witness keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// The log.
    pub origin: String,
    /// quire-split-view/v1 JSON.
    pub json: String,
    /// Unix seconds when found.
    pub found_at: u64,
    /// Where the conflicting checkpoint came from.
    pub source: String,
}

/// What the writer answers to an add.
#[derive(Debug, Clone)]
pub struct Added {
    /// The checkpoint text that may now be cosigned.
    pub text: String,
    /// Whether the state moved forward (false: the same checkpoint again).
    pub advanced: bool,
}

enum Job {
    Add {
        old: u64,
        proof: Vec<Hash>,
        new: Verified,
        keys: Arc<[VerifierKey]>,
        source: String,
        reply: oneshot::Sender<Result<Added, AddError>>,
    },
    Evidence {
        record: EvidenceRecord,
        reply: oneshot::Sender<Result<bool, String>>,
    },
}

/// The state: a redb file, an in-memory copy of the latest checkpoints and
/// the writer thread.
pub struct State {
    latest: Arc<RwLock<HashMap<String, Arc<Latest>>>>,
    evidence: Arc<RwLock<Vec<EvidenceRecord>>>,
    jobs: mpsc::Sender<Job>,
    /// Bumped after every commit that moved a log forward.
    generation: tokio::sync::watch::Receiver<u64>,
}

/// The state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// redb failed.
    #[error("opening witness state {path}: {message}")]
    Db {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A stored record does not decode.
    #[error("witness state {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What.
        message: String,
    },
}

fn encode(l: &Latest) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + l.note.len());
    v.extend_from_slice(&l.size.to_be_bytes());
    v.extend_from_slice(l.root.as_bytes());
    v.extend_from_slice(&l.note);
    v
}

fn decode(b: &[u8]) -> Option<Latest> {
    let size = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    let root = Hash::from_slice(b.get(8..40)?).ok()?;
    Some(Latest {
        size,
        root,
        note: b.get(40..)?.to_vec(),
    })
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl State {
    /// Opens (creating) the state at `path` and starts its writer thread.
    ///
    /// # Errors
    /// [`OpenError`] when the file cannot be opened or a record is corrupt.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let shown = path.display().to_string();
        let db_err = |e: &dyn std::fmt::Display| OpenError::Db {
            path: shown.clone(),
            message: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| db_err(&e))?;
        {
            let tx = db.begin_write().map_err(|e| db_err(&e))?;
            tx.open_table(LATEST).map_err(|e| db_err(&e))?;
            tx.open_table(EVIDENCE).map_err(|e| db_err(&e))?;
            tx.commit().map_err(|e| db_err(&e))?;
        }
        let mut latest = HashMap::new();
        let mut evidence = Vec::new();
        {
            let tx = db.begin_read().map_err(|e| db_err(&e))?;
            let table = tx.open_table(LATEST).map_err(|e| db_err(&e))?;
            for row in table.iter().map_err(|e| db_err(&e))? {
                let (k, v) = row.map_err(|e| db_err(&e))?;
                let l = decode(v.value()).ok_or_else(|| OpenError::Corrupt {
                    path: shown.clone(),
                    message: format!("latest checkpoint of {:?} does not decode", k.value()),
                })?;
                latest.insert(k.value().to_owned(), Arc::new(l));
            }
            let table = tx.open_table(EVIDENCE).map_err(|e| db_err(&e))?;
            for row in table.iter().map_err(|e| db_err(&e))? {
                let (_, v) = row.map_err(|e| db_err(&e))?;
                let r: EvidenceRecord =
                    serde_json::from_slice(v.value()).map_err(|e| OpenError::Corrupt {
                        path: shown.clone(),
                        message: format!("evidence record: {e}"),
                    })?;
                evidence.push(r);
            }
        }
        evidence.sort_by_key(|r| r.found_at);
        let latest = Arc::new(RwLock::new(latest));
        let evidence = Arc::new(RwLock::new(evidence));
        let (jobs, rx) = mpsc::channel(QUEUE);
        let (gen_tx, generation) = tokio::sync::watch::channel(0);
        let writer = Writer {
            db,
            latest: Arc::clone(&latest),
            evidence: Arc::clone(&evidence),
            generation: gen_tx,
        };
        std::thread::Builder::new()
            .name("witness-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| db_err(&e))?;
        Ok(State {
            latest,
            evidence,
            jobs,
            generation,
        })
    }

    /// The latest checkpoint cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<Arc<Latest>> {
        self.latest
            .read()
            .ok()
            .and_then(|m| m.get(origin).map(Arc::clone))
    }

    /// Every log's latest checkpoint.
    pub fn all_latest(&self) -> Vec<(String, Arc<Latest>)> {
        self.latest
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect())
            .unwrap_or_default()
    }

    /// Evidence held, oldest first, for one log or all.
    pub fn evidence(&self, origin: Option<&str>) -> Vec<EvidenceRecord> {
        self.evidence
            .read()
            .map(|v| {
                v.iter()
                    .filter(|r| origin.is_none_or(|o| o == r.origin))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A receiver that changes after each commit that moved a log forward.
    pub fn generation(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.clone()
    }

    /// Checks `new` against the stored state and stores it, atomically and
    /// durably, before answering.
    ///
    /// # Errors
    /// [`AddError`] from [`check::decide`], or storage failure.
    pub async fn add(
        &self,
        old: u64,
        proof: Vec<Hash>,
        new: Verified,
        keys: Arc<[VerifierKey]>,
        source: &str,
    ) -> Result<Added, AddError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Add {
                old,
                proof,
                new,
                keys,
                source: source.to_owned(),
                reply,
            })
            .await
            .map_err(|_| AddError::ShuttingDown)?;
        rx.await.map_err(|_| AddError::ShuttingDown)?
    }

    /// Stores evidence durably (once: the same JSON again is a no-op).
    /// `Ok(true)` when it is new.
    ///
    /// # Errors
    /// The storage failure, in words.
    pub async fn add_evidence(&self, record: EvidenceRecord) -> Result<bool, String> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Evidence { record, reply })
            .await
            .map_err(|_| "the witness is shutting down".to_owned())?;
        rx.await
            .map_err(|_| "the witness is shutting down".to_owned())?
    }
}

struct Writer {
    db: Database,
    latest: Arc<RwLock<HashMap<String, Arc<Latest>>>>,
    evidence: Arc<RwLock<Vec<EvidenceRecord>>>,
    generation: tokio::sync::watch::Sender<u64>,
}

/// A decided job waiting for the commit.
enum Reply {
    Add(
        oneshot::Sender<Result<Added, AddError>>,
        Result<Added, AddError>,
    ),
    Evidence(oneshot::Sender<Result<bool, String>>, bool),
}

fn evidence_id(json: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(json.as_bytes()).into()
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            self.commit_batch(std::mem::take(&mut batch));
        }
    }

    fn commit_batch(&self, batch: Vec<Job>) {
        match self.try_commit(batch) {
            Ok(()) => {}
            Err((replies, e)) => {
                tracing::error!(error = %e, "witness state commit failed; nothing was cosigned");
                for r in replies {
                    match r {
                        Reply::Add(tx, _) => {
                            let _ = tx.send(Err(AddError::Storage(e.clone())));
                        }
                        Reply::Evidence(tx, _) => {
                            let _ = tx.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_lines)]
    fn try_commit(&self, batch: Vec<Job>) -> Result<(), (Vec<Reply>, String)> {
        let mut replies = Vec::with_capacity(batch.len());
        let mut overlay: HashMap<String, Arc<Latest>> = HashMap::new();
        let mut new_evidence: Vec<EvidenceRecord> = Vec::new();
        let tx = match self.db.begin_write() {
            Ok(t) => t,
            Err(e) => return Err((fail_all(batch), e.to_string())),
        };
        let result = (|| -> Result<(), redb::Error> {
            let mut latest_t = tx.open_table(LATEST)?;
            let mut ev_t = tx.open_table(EVIDENCE)?;
            let known = self
                .latest
                .read()
                .map_err(|_| redb::Error::Corrupted("witness state lock poisoned".into()))?;
            let mut store_evidence =
                |record: EvidenceRecord, new_evidence: &mut Vec<EvidenceRecord>| {
                    let id = evidence_id(&record.json);
                    if ev_t.get(&id[..])?.is_some()
                        || new_evidence.iter().any(|r| r.json == record.json)
                    {
                        return Ok::<bool, redb::Error>(false);
                    }
                    let bytes = serde_json::to_vec(&record).unwrap_or_default();
                    ev_t.insert(&id[..], &bytes[..])?;
                    new_evidence.push(record);
                    Ok(true)
                };
            for job in batch {
                match job {
                    Job::Add {
                        old,
                        proof,
                        new,
                        keys,
                        source,
                        reply,
                    } => {
                        let stored = overlay
                            .get(&new.origin)
                            .or_else(|| known.get(&new.origin))
                            .cloned();
                        let decided = check::decide(stored.as_deref(), old, &proof, &new, &keys);
                        let out = match decided {
                            Ok(Decision::Same) => Ok(Added {
                                text: new.checkpoint.to_text(),
                                advanced: false,
                            }),
                            Ok(Decision::Advance(l)) => {
                                latest_t.insert(new.origin.as_str(), &encode(&l)[..])?;
                                overlay.insert(new.origin.clone(), Arc::new(l));
                                Ok(Added {
                                    text: new.checkpoint.to_text(),
                                    advanced: true,
                                })
                            }
                            Err(e) => {
                                if let Some(ev) = e.evidence() {
                                    store_evidence(
                                        EvidenceRecord {
                                            origin: new.origin.clone(),
                                            json: ev.to_json(),
                                            found_at: now_secs(),
                                            source: source.clone(),
                                        },
                                        &mut new_evidence,
                                    )?;
                                }
                                Err(e)
                            }
                        };
                        replies.push(Reply::Add(reply, out));
                    }
                    Job::Evidence { record, reply } => {
                        let fresh = store_evidence(record, &mut new_evidence)?;
                        replies.push(Reply::Evidence(reply, fresh));
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            return Err((replies, e.to_string()));
        }
        if let Err(e) = tx.commit() {
            return Err((replies, e.to_string()));
        }
        // Durable: publish, then answer.
        let advanced = !overlay.is_empty();
        if let Ok(mut m) = self.latest.write() {
            m.extend(overlay);
        }
        for r in &new_evidence {
            tracing::warn!(
                origin = %r.origin,
                source = %r.source,
                evidence = %r.json,
                "SPLIT VIEW: the log signed two checkpoints that cannot both be true; evidence stored"
            );
            metrics::counter!("quire_witness_evidence_total", "origin" => r.origin.clone())
                .increment(1);
        }
        if !new_evidence.is_empty() {
            if let Ok(mut v) = self.evidence.write() {
                v.extend(new_evidence);
            }
        }
        if advanced {
            self.generation.send_modify(|g| *g += 1);
        }
        for r in replies {
            match r {
                Reply::Add(tx, out) => {
                    let _ = tx.send(out);
                }
                Reply::Evidence(tx, fresh) => {
                    let _ = tx.send(Ok(fresh));
                }
            }
        }
        Ok(())
    }
}

fn fail_all(batch: Vec<Job>) -> Vec<Reply> {
    batch
        .into_iter()
        .map(|j| match j {
            Job::Add { reply, .. } => Reply::Add(reply, Err(AddError::ShuttingDown)),
            Job::Evidence { reply, .. } => Reply::Evidence(reply, false),
        })
        .collect()
}

/// Checks evidence with the log's keys and returns its record.
///
/// # Errors
/// Why it proves nothing.
pub fn checked_evidence(
    json: &str,
    keys_of: impl Fn(&str) -> Option<Arc<[VerifierKey]>>,
    source: &str,
) -> Result<EvidenceRecord, String> {
    let ev = SplitViewEvidence::from_json(json.as_bytes()).map_err(|e| e.to_string())?;
    let origin = quire_core::Note::parse(ev.first.as_bytes())
        .ok()
        .and_then(|n| quire_core::Checkpoint::parse(n.text().as_bytes()).ok())
        .map(|c| c.origin().to_owned())
        .ok_or("evidence: first checkpoint does not parse")?;
    let keys = keys_of(&origin).ok_or_else(|| format!("evidence of unknown log {origin:?}"))?;
    ev.check(&keys).map_err(|e| e.to_string())?;
    Ok(EvidenceRecord {
        origin,
        json: ev.to_json(),
        found_at: now_secs(),
        source: source.chars().take(256).collect(),
    })
}
