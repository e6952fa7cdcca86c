//! Several `quire-server` replica processes on one log in PostgreSQL, the
//! writers that load them, the witnesses fed every checkpoint any replica
//! serves, and the check run after every fault: every acknowledged entry at
//! its index byte for byte, one root per size over everything stored,
//! served or witnessed, each stored checkpoint consistent with the next,
//! and no witness holding evidence.
//!
//! Faults are placed by counting acknowledgements; every wait is a bounded
//! poll. The witnesses are in `replicas/witnesses.rs`, the check in
//! `replicas/check.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod check;
mod witnesses;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quire_core::{Checkpoint, Note};
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::AddEntriesRequest;
use tonic::transport::Channel;

use crate::server::{free_port, ServerProcess};
use crate::{copy_dir, postgres, WitnessProcess};

/// How long a write, a leader or a catch-up is waited for: far above what
/// any takes, including a PostgreSQL failover; only a broken replica
/// reaches it.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Acknowledged writes: index → entry, and refusals seen on the way.
#[derive(Default)]
pub struct Acks {
    /// Every acknowledgement, in the order it came.
    pub acked: Vec<(u64, Vec<u8>)>,
    /// The last few refusals (status messages), for a failure's report.
    pub refused: Vec<String>,
    /// Every refusal, counted.
    pub refusals: usize,
}

/// The acknowledgements, whatever a writer that panicked left them as.
fn lock(acks: &Mutex<Acks>) -> std::sync::MutexGuard<'_, Acks> {
    acks.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The replicas of one log, and what they were seen to do.
pub struct Replicas {
    /// The log's origin.
    pub origin: String,
    url: String,
    dir: PathBuf,
    /// Running replicas by name.
    pub procs: BTreeMap<&'static str, ServerProcess>,
    /// Every checkpoint note any replica served.
    pub served: Vec<Vec<u8>>,
    /// What the writers were told.
    pub acks: Arc<Mutex<Acks>>,
    next_entry: Arc<AtomicU64>,
    first: Option<&'static str>,
    witnesses: Vec<WitnessProcess>,
    /// Lease and renewal, in milliseconds.
    pub lease_ms: (u64, u64),
    /// More to say in a failure's report (the database formation's state).
    pub context: Option<Box<dyn Fn() -> String + Send + Sync>>,
    /// The database URL of a replica that reaches it another way than
    /// the log's URL (by name).
    pub routes: BTreeMap<&'static str, String>,
}

/// Writers running in the background until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Stops the writers and waits for their last write.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

impl Replicas {
    /// No replica yet, on the PostgreSQL database at `url`, with files in
    /// `dir`.
    pub fn new(url: String, dir: &Path, origin: &str) -> Self {
        Replicas {
            origin: origin.to_owned(),
            url,
            dir: dir.to_owned(),
            procs: BTreeMap::new(),
            served: Vec::new(),
            acks: Arc::default(),
            next_entry: Arc::default(),
            first: None,
            witnesses: Vec::new(),
            lease_ms: (1500, 300),
            context: None,
            routes: BTreeMap::new(),
        }
    }

    /// Runs `sql` on the log's database (its read-write node).
    ///
    /// # Errors
    /// `psql`'s words.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        postgres::psql(&self.url, sql)
    }

    fn config(&self, name: &str, port: u16) -> PathBuf {
        let d = self.dir.join(name);
        let path = self.config_path(name);
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\nhigh_water_dir = {:?}\n\
                 [[logs]]\norigin = {:?}\n\
                 [logs.storage]\nengine = \"postgres\"\nurl = {:?}\n\
                 [replication]\nname = {name:?}\nadvertise = \"http://127.0.0.1:{port}\"\n\
                 lease_ms = {}\nrenew_ms = {}\nfollow_ms = 50\n",
                d.join("data"),
                d.join("high-water"),
                self.origin,
                self.routes.get(name).unwrap_or(&self.url),
                self.lease_ms.0,
                self.lease_ms.1,
            ),
        )
        .unwrap();
        path
    }

    /// The configuration file of replica `name`.
    pub fn config_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    /// Starts replica `name` (with the keys of the first one started).
    pub fn start(&mut self, name: &'static str) {
        if let Some(first) = self.first.filter(|f| *f != name) {
            copy_dir(
                &self.dir.join(first).join("data/keys"),
                &self.dir.join(name).join("data/keys"),
            );
        }
        let mut why = Vec::new();
        for _ in 0..3 {
            let port = free_port().unwrap();
            let config = self.config(name, port);
            match ServerProcess::start(&config, format!("127.0.0.1:{port}").parse().unwrap()) {
                Ok(p) => {
                    self.procs.insert(name, p);
                    self.first.get_or_insert(name);
                    return;
                }
                Err(e) => why.push(e),
            }
        }
        panic!("replica {name} did not start: {why:?}");
    }

    /// SIGKILLs replica `name`.
    pub fn kill(&mut self, name: &str) -> &'static str {
        let (n, mut p) = self.procs.remove_entry(name).expect("a running replica");
        p.kill();
        n
    }

    /// The log's lease epoch (how many times the lease was taken).
    pub fn epoch(&self) -> i64 {
        let e = self.psql("SELECT epoch FROM quire_leases").unwrap();
        e.parse()
            .unwrap_or_else(|_| panic!("epoch {e:?}\n{}", self.said()))
    }

    /// The replica holding a valid lease, by name.
    pub fn leader(&self) -> Option<String> {
        let h = self
            .psql(
                "SELECT split_part(holder, '/', 1) FROM quire_leases WHERE expires > clock_timestamp()",
            )
            .ok()?;
        (!h.is_empty()).then_some(h)
    }

    /// Waits for a running replica other than `not` to hold the lease.
    pub async fn wait_leader(&self, not: Option<&str>) -> String {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(l) = self.leader().filter(|l| Some(l.as_str()) != not) {
                if self.procs.contains_key(l.as_str()) {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no new leader (not {not:?})\n{}", self.said());
    }

    /// How many writes were acknowledged.
    pub fn acked(&self) -> usize {
        lock(&self.acks).acked.len()
    }

    /// Waits until at least `n` writes were acknowledged in all.
    pub async fn wait_acked(&self, n: usize) {
        self.wait_count(n, "writes acknowledged", |a| a.acked.len())
            .await;
    }

    /// Writes refused so far, counted.
    pub fn refusals(&self) -> usize {
        lock(&self.acks).refusals
    }

    /// Waits until at least `n` writes were refused in all.
    pub async fn wait_refused(&self, n: usize) {
        self.wait_count(n, "writes refused", |a| a.refusals).await;
    }

    /// Waits until `count` of what the writers were told reaches `n`
    /// (bounded polling, [`PATIENCE`]); the report names `what`.
    async fn wait_count(&self, n: usize, what: &str, count: impl Fn(&Acks) -> usize) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (have, refused) = {
                let a = lock(&self.acks);
                (
                    count(&a),
                    (Instant::now() > deadline).then(|| a.refused.clone()),
                )
            };
            if have >= n {
                return;
            }
            if let Some(refused) = refused {
                panic!(
                    "{have} of {n} {what}; last refusals: {refused:?}\n{}",
                    self.said()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What each running replica said on stderr, and the context, for a
    /// failure's report.
    pub fn said(&self) -> String {
        // The context first: a report cut short keeps its start and end.
        let mut s: Vec<String> = self.context.iter().map(|c| c()).collect();
        s.extend(
            self.procs
                .iter()
                .map(|(n, p)| format!("--- replica {n} ({}):\n{}", p.url(), p.said())),
        );
        s.join("\n")
    }

    /// A client of each replica in `via` (connected on first use).
    fn clients(&self, via: &[&str]) -> Vec<LogClient<Channel>> {
        via.iter()
            .map(|n| {
                LogClient::new(
                    Channel::from_shared(self.procs[n].url())
                        .unwrap()
                        .connect_lazy(),
                )
            })
            .collect()
    }

    /// Writes `n` entries, one at a time, through the replicas in `via`
    /// in turn, retrying on the next while sequencing moves.
    pub async fn write(&mut self, n: usize, via: &[&str]) {
        let mut clients = self.clients(via);
        for _ in 0..n {
            let id = self.next_entry.fetch_add(1, Ordering::Relaxed);
            assert!(
                write_one(
                    &self.origin,
                    &mut clients,
                    id,
                    &self.acks,
                    &AtomicBool::new(false)
                )
                .await,
                "no replica took entry {id}"
            );
        }
    }

    /// `writers` writers in the background, each writing one entry at a
    /// time through the replicas in `via` (the next one when a write
    /// fails) until stopped.
    pub fn load(&self, writers: usize, via: &[&str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = self.clients(via);
        let tasks = (0..writers)
            .map(|w| {
                let (stop, acks, next, origin) = (
                    Arc::clone(&stop),
                    Arc::clone(&self.acks),
                    Arc::clone(&self.next_entry),
                    self.origin.clone(),
                );
                let mut clients = clients.clone();
                let turn = w % clients.len().max(1);
                clients.rotate_left(turn);
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        write_one(&origin, &mut clients, id, &acks, &stop).await;
                    }
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// The checkpoint replica `name` serves now.
    pub async fn checkpoint(&self, name: &str) -> Option<Vec<u8>> {
        crate::checkpoint(&self.procs[name].url(), &self.origin, false)
            .await
            .ok()
    }

    /// Takes what every running replica serves now, and hands it to the
    /// witnesses.
    pub async fn sample(&mut self) {
        let names: Vec<&'static str> = self.procs.keys().copied().collect();
        for name in names {
            self.take(name).await;
        }
    }

    /// The checkpoint replica `name` serves now, handed to the witnesses
    /// and kept; its size.
    async fn take(&mut self, name: &str) -> Option<u64> {
        let cp = self.checkpoint(name).await?;
        let size = size_of(&cp);
        self.feed(name, &cp).await;
        self.served.push(cp);
        Some(size)
    }

    /// Waits until every running replica serves a checkpoint that holds
    /// every acknowledged write.
    pub async fn wait_caught_up(&mut self) {
        let max = lock(&self.acks).acked.iter().map(|(i, _)| *i).max();
        let Some(max) = max else { return };
        let names: Vec<&'static str> = self.procs.keys().copied().collect();
        for name in names {
            let deadline = Instant::now() + PATIENCE;
            loop {
                if self.take(name).await.is_some_and(|size| size > max) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {name} serves every write\n{}",
                    self.said()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The size of a checkpoint note.
pub fn size_of(note: &[u8]) -> u64 {
    Checkpoint::parse(Note::parse(note).unwrap().text().as_bytes())
        .unwrap()
        .size()
}

/// Writes entry `id` through `clients` in turn until one acknowledges it
/// (true), `stop` is set, or [`PATIENCE`] has passed.
async fn write_one(
    origin: &str,
    clients: &mut [LogClient<Channel>],
    id: u64,
    acks: &Mutex<Acks>,
    stop: &AtomicBool,
) -> bool {
    let entry = format!("replicated entry {id}").into_bytes();
    let deadline = Instant::now() + PATIENCE;
    let mut attempt = 0;
    while Instant::now() < deadline {
        let n = clients.len();
        let c = &mut clients[attempt % n];
        attempt += 1;
        let mut req = tonic::Request::new(AddEntriesRequest {
            log: origin.to_owned(),
            entries: vec![entry.clone()],
            with_proof: false,
            witnessed: false,
        });
        req.set_timeout(Duration::from_secs(10));
        match c.add_entries(req).await {
            Ok(resp) => {
                let index = resp.into_inner().entries[0].index;
                lock(acks).acked.push((index, entry));
                return true;
            }
            Err(s) => {
                let mut a = lock(acks);
                a.refusals += 1;
                if a.refused.len() >= 8 {
                    a.refused.remove(0);
                }
                a.refused.push(format!("{}: {}", s.code(), s.message()));
            }
        }
        // An entry refused (its outcome known) can be given up when
        // stopped; one timed out may have been sequenced: no matter, it
        // was not acknowledged.
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
