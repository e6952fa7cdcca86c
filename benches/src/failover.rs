//! Write unavailability when the leading replica dies (issue 12's failover
//! figure): three `quire-server` replica processes share one log in a
//! PostgreSQL database; a writer appends one entry at a time through a
//! replica that does not lead; the leader is killed (SIGKILL); the time from the
//! kill to the next acknowledged write is the round's unavailability. The
//! killed replica is restarted before the next round. Every acknowledged
//! entry is read back from storage at its index at the end.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::AddEntriesRequest;
use serde::Serialize;
use tonic::transport::Channel;

const ORIGIN: &str = "failover.example/log";

/// How to run it.
#[derive(Clone, Debug)]
pub struct FailoverOptions {
    /// A PostgreSQL server's URL; a database of its own is created there.
    pub url: String,
    /// Rounds (each one kill).
    pub repeats: usize,
    /// The replicas' lease, milliseconds.
    pub lease_ms: u64,
    /// How often the holder renews it and the others look, milliseconds.
    pub renew_ms: u64,
    /// Where the replicas' files go.
    pub dir: PathBuf,
    /// The `quire-server` binary.
    pub server: PathBuf,
}

/// What it measured.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverReport {
    /// The lease, milliseconds.
    pub lease_ms: u64,
    /// The renewal interval, milliseconds.
    pub renew_ms: u64,
    /// Per round: from the SIGKILL to the next acknowledged write.
    pub unavailable_ms: Vec<f64>,
    /// Their median.
    pub p50_ms: f64,
    /// Their maximum.
    pub max_ms: f64,
    /// Entries acknowledged (all read back at their indexes).
    pub acknowledged: usize,
}

struct Replica {
    child: Child,
    url: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start(opts: &FailoverOptions, db_url: &str, name: &str) -> anyhow::Result<Replica> {
    let port = free_port()?;
    let d = opts.dir.join(name);
    let config = opts.dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nhigh_water_dir = {:?}\n[[logs]]\norigin = {ORIGIN:?}\n\
             [logs.storage]\nengine = \"postgres\"\nurl = {db_url:?}\n\
             [replication]\nname = {name:?}\nadvertise = \"http://127.0.0.1:{port}\"\n\
             lease_ms = {}\nrenew_ms = {}\n",
            d.join("data").display().to_string(),
            d.join("high-water").display().to_string(),
            opts.lease_ms,
            opts.renew_ms
        ),
    )?;
    let mut child = Command::new(&opts.server)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("listening on ") => break,
            Some(Ok(_)) => {}
            _ => anyhow::bail!("replica {name} exited before listening"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(Replica {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn leader(db: &tokio_postgres::Client) -> anyhow::Result<Option<String>> {
    let row = db
        .query_opt(
            "SELECT split_part(holder, '/', 1) FROM quire_leases WHERE expires > clock_timestamp()",
            &[],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

async fn add(client: &mut LogClient<Channel>, entry: &[u8]) -> Option<u64> {
    let r = client
        .add_entries(AddEntriesRequest {
            log: ORIGIN.into(),
            entries: vec![entry.to_vec()],
            with_proof: false,
            witnessed: false,
        })
        .await
        .ok()?;
    r.into_inner().entries.first().map(|e| e.index)
}

/// Runs the rounds.
///
/// # Errors
/// A replica that does not start, PostgreSQL unreachable, a write that
/// never succeeds again, or an acknowledged entry not in storage.
pub async fn run(opts: &FailoverOptions) -> anyhow::Result<FailoverReport> {
    let admin = connect(&opts.url).await?;
    let name = format!("quire_failover_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let db_url = match opts.url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => anyhow::bail!("--pg must end in /DATABASE"),
    };
    std::fs::create_dir_all(&opts.dir)?;
    let names = ["a", "b", "c"];
    let mut replicas: Vec<Option<Replica>> = vec![Some(start(opts, &db_url, "a")?), None, None];
    for n in &names[1..] {
        copy_dir(
            &opts.dir.join("a/data/keys"),
            &opts.dir.join(n).join("data/keys"),
        )?;
    }
    replicas[1] = Some(start(opts, &db_url, "b")?);
    replicas[2] = Some(start(opts, &db_url, "c")?);
    let db = connect(&db_url).await?;
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut unavailable = Vec::new();
    let mut n = 0u64;
    for round in 0..opts.repeats {
        // A settled leader, and a writer on another replica.
        let lead = wait_leader(&db, Duration::from_secs(30)).await?;
        let li = names.iter().position(|x| *x == lead).unwrap_or(0);
        let wi = (li + 1) % 3;
        let url = replicas[wi]
            .as_ref()
            .map(|r| r.url.clone())
            .unwrap_or_default();
        let mut client = LogClient::new(Channel::from_shared(url)?.connect_lazy());
        for _ in 0..20 {
            let entry = format!("failover {n}").into_bytes();
            n += 1;
            let index = retry(&mut client, &entry, Duration::from_secs(30)).await?;
            acked.push((index, entry));
        }
        let killed_at = Instant::now();
        replicas[li] = None; // SIGKILL
        let entry = format!("failover {n}").into_bytes();
        n += 1;
        let index = retry(&mut client, &entry, Duration::from_secs(60)).await?;
        let ms = killed_at.elapsed().as_secs_f64() * 1000.0;
        eprintln!("round {round}: leader {lead} killed, writes again after {ms:.0} ms");
        unavailable.push(ms);
        acked.push((index, entry));
        replicas[li] = Some(start(opts, &db_url, names[li])?);
    }
    // Every acknowledged entry is stored at its index.
    let check_url = db_url.clone();
    let check = acked.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use quire_server::store::postgres::{Create, PgOptions, PgStore};
        use quire_server::store::{Storage as _, StorageReader as _};
        let store = PgStore::open(&PgOptions::new(check_url), ORIGIN, Create::No)?;
        let r = store.reader()?;
        for (index, entry) in &check {
            let got = r.entries(*index, index + 1)?;
            anyhow::ensure!(
                got.first() == Some(entry),
                "entry {index} is not what was acknowledged"
            );
        }
        Ok(())
    })
    .await??;
    drop(replicas);
    let mut sorted = unavailable.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(FailoverReport {
        lease_ms: opts.lease_ms,
        renew_ms: opts.renew_ms,
        p50_ms: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        max_ms: sorted.last().copied().unwrap_or(0.0),
        unavailable_ms: unavailable,
        acknowledged: acked.len(),
    })
}

async fn wait_leader(db: &tokio_postgres::Client, within: Duration) -> anyhow::Result<String> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(l) = leader(db).await? {
            return Ok(l);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("no leader within {within:?}")
}

async fn retry(
    client: &mut LogClient<Channel>,
    entry: &[u8],
    within: Duration,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(i) = add(client, entry).await {
            return Ok(i);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("no write acknowledged within {within:?}")
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}
