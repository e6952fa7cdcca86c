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

pub(crate) const ORIGIN: &str = "failover.example/log";

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

/// A `quire-server` replica process, killed (`SIGKILL`) when dropped.
pub(crate) struct Replica {
    child: Child,
    /// `http://ADDR`.
    pub(crate) url: String,
}

/// What a replica runs with.
pub(crate) struct Spec<'a> {
    /// The `quire-server` binary.
    pub(crate) server: &'a Path,
    /// Where the replicas' files go.
    pub(crate) dir: &'a Path,
    /// Lease and renewal, milliseconds.
    pub(crate) lease_ms: (u64, u64),
    /// The log's database.
    pub(crate) db_url: &'a str,
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

pub(crate) fn start(spec: &Spec<'_>, name: &str) -> anyhow::Result<Replica> {
    let port = free_port()?;
    let d = spec.dir.join(name);
    let config = spec.dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nhigh_water_dir = {:?}\n[[logs]]\norigin = {ORIGIN:?}\n\
             [logs.storage]\nengine = \"postgres\"\nurl = {:?}\n\
             [replication]\nname = {name:?}\nadvertise = \"http://127.0.0.1:{port}\"\n\
             lease_ms = {}\nrenew_ms = {}\n",
            d.join("data").display().to_string(),
            d.join("high-water").display().to_string(),
            spec.db_url,
            spec.lease_ms.0,
            spec.lease_ms.1
        ),
    )?;
    let mut child = Command::new(spec.server)
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

pub(crate) async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

pub(crate) async fn leader(db: &tokio_postgres::Client) -> anyhow::Result<Option<String>> {
    let row = db
        .query_opt(
            "SELECT split_part(holder, '/', 1) FROM quire_leases WHERE expires > clock_timestamp()",
            &[],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
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
    let db_url = create_database(&opts.url, "quire_failover").await?;
    let spec = Spec {
        server: &opts.server,
        dir: &opts.dir,
        lease_ms: (opts.lease_ms, opts.renew_ms),
        db_url: &db_url,
    };
    let mut replicas = start_three(&spec)?;
    let db = connect(&db_url).await?;
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut unavailable = Vec::new();
    let mut n = 0u64;
    for round in 0..opts.repeats {
        // A settled leader, and a writer on another replica.
        let lead = wait_leader(&db, Duration::from_secs(30)).await?;
        let li = NAMES.iter().position(|x| *x == lead).unwrap_or(0);
        let mut client = write_20(&replicas, li, &mut acked, &mut n).await?;
        let killed_at = Instant::now();
        replicas[li] = None; // SIGKILL
        let entry = format!("failover {n}").into_bytes();
        n += 1;
        let index = retry(&mut client, &entry, Duration::from_secs(60)).await?;
        let ms = killed_at.elapsed().as_secs_f64() * 1000.0;
        eprintln!("round {round}: leader {lead} killed, writes again after {ms:.0} ms");
        unavailable.push(ms);
        acked.push((index, entry));
        replicas[li] = Some(start(&spec, NAMES[li])?);
    }
    check_acked(&db_url, acked.clone()).await?;
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

/// Writes 20 entries through the replica after the leader (`lead`, its
/// position; bounded: 60 s each), recording them; that replica's client,
/// for the round's writes.
pub(crate) async fn write_20(
    replicas: &[Option<Replica>],
    lead: usize,
    acked: &mut Vec<(u64, Vec<u8>)>,
    n: &mut u64,
) -> anyhow::Result<LogClient<Channel>> {
    let wi = (lead + 1) % NAMES.len();
    let url = replicas
        .get(wi)
        .and_then(Option::as_ref)
        .map(|r| r.url.clone())
        .unwrap_or_default();
    let mut client = LogClient::new(Channel::from_shared(url)?.connect_lazy());
    for _ in 0..20 {
        let entry = format!("failover {n}").into_bytes();
        *n += 1;
        let index = retry(&mut client, &entry, Duration::from_secs(60)).await?;
        acked.push((index, entry));
    }
    Ok(client)
}

/// A new database `PREFIX_PID` on the server at `url` (dropped first if a
/// run of the same process id left it); its URL, with the same hosts and
/// query.
///
/// # Errors
/// The server unreachable, or a URL without a `/DATABASE` path.
pub(crate) async fn create_database(url: &str, prefix: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}_{}", std::process::id());
    let admin = connect(url).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let Some((hosts, _)) = base.rsplit_once('/') else {
        anyhow::bail!("--pg must end in /DATABASE");
    };
    Ok(match query {
        Some(q) => format!("{hosts}/{name}?{q}"),
        None => format!("{hosts}/{name}"),
    })
}

/// The replicas' names.
pub(crate) const NAMES: [&str; 3] = ["a", "b", "c"];

/// Starts replicas a, b and c (b and c with a's keys).
pub(crate) fn start_three(spec: &Spec<'_>) -> anyhow::Result<Vec<Option<Replica>>> {
    std::fs::create_dir_all(spec.dir)?;
    let mut replicas = vec![Some(start(spec, "a")?)];
    for n in &NAMES[1..] {
        copy_dir(
            &spec.dir.join("a/data/keys"),
            &spec.dir.join(n).join("data/keys"),
        )?;
        replicas.push(Some(start(spec, n)?));
    }
    Ok(replicas)
}

/// Every acknowledged entry is stored at its index.
pub(crate) async fn check_acked(db_url: &str, acked: Vec<(u64, Vec<u8>)>) -> anyhow::Result<()> {
    let url = db_url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use quire_server::store::postgres::{Create, PgOptions, PgStore};
        use quire_server::store::{Storage as _, StorageReader as _};
        let store = PgStore::open(&PgOptions::new(url), ORIGIN, Create::No)?;
        let r = store.reader()?;
        for (index, entry) in &acked {
            let got = r.entries(*index, index + 1)?;
            anyhow::ensure!(
                got.first() == Some(entry),
                "entry {index} is not what was acknowledged"
            );
        }
        Ok(())
    })
    .await?
}

pub(crate) async fn wait_leader(
    db: &tokio_postgres::Client,
    within: Duration,
) -> anyhow::Result<String> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(l) = leader(db).await? {
            return Ok(l);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("no leader within {within:?}")
}

pub(crate) async fn retry(
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

pub(crate) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}
