//! Three `quire-server` replica processes on one log in PostgreSQL (a real
//! server started by `scripts/postgres`), under faults: the leader
//! SIGKILLed while writers write, the next one SIGSTOPped past its lease and
//! woken, the killed one restarted. After it all: every acknowledged entry
//! at its index byte for byte, one root per size over every checkpoint
//! stored or served by any replica, and writes going on.
//!
//! Faults are placed by counting acknowledgements; waits are bounded polls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use quire_core::{Checkpoint, Note, VerifierKey};
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::AddEntriesRequest;
use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::{Storage, StorageReader};
use quire_tests::copy_dir;
use quire_tests::postgres::{self, Postgres};
use quire_tests::server::{free_port, ServerProcess};
use tonic::transport::Channel;

const ORIGIN: &str = "faults.example/log";

struct Formation {
    pg: &'static Postgres,
    db: String,
    dir: PathBuf,
    procs: BTreeMap<&'static str, ServerProcess>,
    /// Every checkpoint note any replica served.
    served: Vec<Vec<u8>>,
    acked: Vec<(u64, Vec<u8>)>,
    next_entry: u64,
}

impl Formation {
    /// No replica yet, on a new database named from `db`.
    fn new(pg: &'static Postgres, db: &str, dir: &std::path::Path) -> Self {
        Formation {
            pg,
            db: pg.create_database(db).unwrap(),
            dir: dir.to_owned(),
            procs: BTreeMap::new(),
            served: Vec::new(),
            acked: Vec::new(),
            next_entry: 0,
        }
    }

    fn config(&self, name: &str, port: u16) -> PathBuf {
        let d = self.dir.join(name);
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\nhigh_water_dir = {:?}\n\
                 [[logs]]\norigin = {ORIGIN:?}\n\
                 [logs.storage]\nengine = \"postgres\"\nurl = {:?}\n\
                 [replication]\nname = {name:?}\nadvertise = \"http://127.0.0.1:{port}\"\n\
                 lease_ms = 1500\nrenew_ms = 300\nfollow_ms = 50\n",
                d.join("data"),
                d.join("high-water"),
                self.pg.url_of(&self.db)
            ),
        )
        .unwrap();
        path
    }

    fn start(&mut self, name: &'static str) {
        let mut why = Vec::new();
        for _ in 0..3 {
            let port = free_port().unwrap();
            let config = self.config(name, port);
            match ServerProcess::start(&config, format!("127.0.0.1:{port}").parse().unwrap()) {
                Ok(p) => {
                    self.procs.insert(name, p);
                    return;
                }
                Err(e) => why.push(e),
            }
        }
        panic!("replica {name} did not start: {why:?}");
    }

    /// The replica holding a valid lease, by name.
    fn leader(&self) -> Option<String> {
        let h = self
            .pg
            .psql(
                &self.db,
                "SELECT split_part(holder, '/', 1) FROM quire_leases WHERE expires > clock_timestamp()",
            )
            .unwrap();
        (!h.is_empty()).then_some(h)
    }

    async fn wait_leader(&self, not: Option<&str>) -> String {
        for _ in 0..1000 {
            if let Some(l) = self.leader().filter(|l| Some(l.as_str()) != not) {
                if self.procs.contains_key(l.as_str()) {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no new leader (not {not:?})");
    }

    async fn client(&self, name: &str) -> LogClient<Channel> {
        let url = self.procs[name].url();
        LogClient::new(Channel::from_shared(url).unwrap().connect_lazy())
    }

    /// Writes `n` entries through the replicas in `via`, in turn, retrying
    /// on another while sequencing moves; records each acknowledgement.
    async fn write(&mut self, n: usize, via: &[&str]) {
        for k in 0..n {
            let entry = format!("fault entry {}", self.next_entry).into_bytes();
            self.next_entry += 1;
            let mut done = false;
            for attempt in 0..300 {
                let name = via[(k + attempt) % via.len()];
                let mut c = self.client(name).await;
                let r = c
                    .add_entries(AddEntriesRequest {
                        log: ORIGIN.into(),
                        entries: vec![entry.clone()],
                        with_proof: false,
                        witnessed: false,
                    })
                    .await;
                match r {
                    Ok(resp) => {
                        let index = resp.into_inner().entries[0].index;
                        self.acked.push((index, entry.clone()));
                        done = true;
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            assert!(done, "no replica took entry {k}");
        }
    }

    /// The checkpoint replica `name` serves now.
    async fn checkpoint(&self, name: &str) -> Option<Vec<u8>> {
        quire_tests::checkpoint(&self.procs[name].url(), ORIGIN, false)
            .await
            .ok()
    }

    /// What every running replica serves now.
    async fn sample(&mut self) {
        let names: Vec<&'static str> = self.procs.keys().copied().collect();
        for name in names {
            if let Some(cp) = self.checkpoint(name).await {
                self.served.push(cp);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_survive_a_killed_and_a_paused_leader_without_a_fork() {
    let pg = postgres::shared();
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Formation::new(pg, "faults", tmp.path());
    f.start("a");
    for n in ["b", "c"] {
        copy_dir(&f.dir.join("a/data/keys"), &f.dir.join(n).join("data/keys"));
    }
    f.start("b");
    f.start("c");
    let first = f.wait_leader(None).await;
    f.write(40, &["a", "b", "c"]).await;
    f.sample().await;

    // SIGKILL the leader after 40 acknowledgements; the others go on.
    f.procs.get_mut(first.as_str()).unwrap().kill();
    let killed: &'static str = ["a", "b", "c"].into_iter().find(|n| *n == first).unwrap();
    f.procs.remove(killed);
    let live: Vec<&str> = f.procs.keys().copied().collect();
    f.write(30, &live).await;
    let second = f.wait_leader(Some(&first)).await;
    f.sample().await;

    // SIGSTOP the new leader past its lease: the last one takes over.
    f.procs[second.as_str()].signal("STOP");
    let third = f.wait_leader(Some(&second)).await;
    assert_ne!(third, first);
    f.write(20, &[third.as_str()]).await;
    // Woken, it must not sign: its commits are refused, it steps down, and
    // writes sent to it go to the new leader.
    f.procs[second.as_str()].signal("CONT");
    f.write(20, &[second.as_str(), third.as_str()]).await;
    f.sample().await;

    // The killed replica comes back as a follower and takes writes.
    f.start(killed);
    f.write(10, &[killed]).await;
    let all: Vec<&str> = f.procs.keys().copied().collect();
    f.write(10, &all).await;

    // Every replica serves every acknowledged write.
    let max = f.acked.iter().map(|(i, _)| *i).max().unwrap();
    for name in all.clone() {
        let mut ok = false;
        for _ in 0..500 {
            let cp = f.checkpoint(name).await.unwrap();
            let size = Checkpoint::parse(Note::parse(&cp).unwrap().text().as_bytes())
                .unwrap()
                .size();
            f.served.push(cp);
            if size > max {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "replica {name} serves every write");
    }

    // Storage: every acknowledged entry at its index, no index twice, one
    // root per size, each checkpoint consistent with the next, and every
    // checkpoint any replica served is the stored one of its size.
    let key_text = std::fs::read_dir(f.dir.join("a/data/keys"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".p256.vkey"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    let key = VerifierKey::parse(key_text.trim()).unwrap();
    let store = PgStore::open(&PgOptions::new(pg.url_of(&f.db)), ORIGIN, Create::No).unwrap();
    let r = store.reader().unwrap();
    let mut indexes: Vec<u64> = f.acked.iter().map(|(i, _)| *i).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), f.acked.len(), "no index acknowledged twice");
    for (index, entry) in &f.acked {
        assert_eq!(
            &r.entries(*index, index + 1).unwrap()[0],
            entry,
            "entry {index}"
        );
    }
    let mut roots = BTreeMap::new();
    let mut stored_notes = BTreeMap::new();
    for c in r.checkpoints(0, 100_000).unwrap() {
        let note = Note::parse(&c.note).unwrap();
        note.verify(std::slice::from_ref(&key)).unwrap();
        let cp = Checkpoint::parse(note.text().as_bytes()).unwrap();
        assert!(roots.insert(cp.size(), *cp.root()).is_none());
        stored_notes.insert(c.size, c.note.clone());
    }
    let sizes: Vec<_> = roots.iter().map(|(s, h)| (*s, *h)).collect();
    for w in sizes.windows(2) {
        let ((a, ra), (b, rb)) = (w[0], w[1]);
        if a > 0 {
            let proof = quire_core::prove_consistency(&r, a, b).unwrap();
            quire_core::verify_consistency(a, b, &proof, &ra, &rb).unwrap();
        }
    }
    for note in &f.served {
        let cp = Checkpoint::parse(Note::parse(note).unwrap().text().as_bytes()).unwrap();
        assert_eq!(
            stored_notes.get(&cp.size()),
            Some(note),
            "a served checkpoint of size {} is the stored one",
            cp.size()
        );
    }
    let epochs = pg.psql(&f.db, "SELECT epoch FROM quire_leases").unwrap();
    assert!(epochs.parse::<i64>().unwrap() >= 3, "epochs {epochs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_from_the_same_configuration_is_refused() {
    let pg = postgres::shared();
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Formation::new(pg, "twice", tmp.path());
    f.start("a");
    f.write(3, &["a"]).await;
    // The same file, another port: the first keeps its files to itself.
    let port = free_port().unwrap();
    let config = f.dir.join("a.toml");
    let e = ServerProcess::start(&config, format!("127.0.0.1:{port}").parse().unwrap())
        .err()
        .unwrap();
    assert!(e.contains("in use by another process"), "{e}");
    // The first goes on, alone.
    f.write(3, &["a"]).await;
    assert_eq!(f.leader().as_deref(), Some("a"));
}
