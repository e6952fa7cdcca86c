//! A server in-process on 127.0.0.1:0, and helpers shared by the gRPC tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_core::{Checkpoint, LogSigner, Note, VerifierKey};
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::GetEntriesRequest;
use quire_server::config::{Config, LogConfig};
use quire_server::log::{DedupPolicy, Log, LogLimits, LogOptions, OpenError};
use quire_server::service::LogService;
use quire_server::store::redb::{RedbOptions, RedbStore};
use tonic::transport::Channel;

pub struct Server {
    pub client: LogClient<Channel>,
    addr: std::net::SocketAddr,
    pub keys: Vec<VerifierKey>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(origins: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        let mut logs = Vec::new();
        let mut keys = Vec::new();
        for o in origins {
            let mut cfg = LogConfig::new(o);
            cfg.max_batch = 1000;
            config.logs.push(cfg.clone());
            let (log, _) = quire_server::open_redb_log(dir.path(), &cfg).unwrap();
            keys.extend(log.verifiers().iter().cloned());
            logs.push(log);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            quire_server::serve(listener, LogService::new(logs), &config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let client = LogClient::connect(format!("http://{addr}")).await.unwrap();
        Server {
            client,
            addr,
            keys,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

pub fn checkpoint(note: &[u8], keys: &[VerifierKey]) -> Checkpoint {
    let n = Note::parse(note).unwrap();
    n.verify(keys).unwrap();
    Checkpoint::parse(n.text().as_bytes()).unwrap()
}

pub fn entry(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i}}}").into_bytes()
}

/// Every entry of the default log from `start` to the latest checkpoint.
pub async fn all_entries(client: &mut LogClient<Channel>, start: u64) -> Vec<Vec<u8>> {
    let mut stream = client
        .get_entries(GetEntriesRequest {
            log: String::new(),
            start,
            end: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        out.extend(page.entries);
    }
    out
}

/// A log over `dir/log.redb`, opened in-process (no gRPC).
pub fn open_log(
    dir: &std::path::Path,
    store: RedbOptions,
    origin: &str,
    signer: LogSigner,
    dedup: DedupPolicy,
    limits: LogLimits,
) -> Result<Log<RedbStore>, OpenError> {
    let store = RedbStore::open(&dir.join("log.redb"), store).unwrap();
    Log::open(
        store,
        LogOptions {
            origin: origin.into(),
            signers: vec![signer],
            dedup,
            limits,
            clock: quire_server::log::system_clock(),
        },
    )
}
