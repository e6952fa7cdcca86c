//! A server in-process on 127.0.0.1:0, and helpers shared by the gRPC tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

pub mod gated;
pub mod process;

use quire_core::{Checkpoint, LogSigner, Note, VerifierKey};
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::GetEntriesRequest;
use quire_server::config::{Config, LogConfig};
use quire_server::log::{DedupPolicy, Log, LogLimits, LogOptions, OpenError};
use quire_server::store::redb::{RedbOptions, RedbStore};
use tonic::transport::Channel;

pub struct Server {
    pub client: LogClient<Channel>,
    addr: std::net::SocketAddr,
    pub keys: Vec<VerifierKey>,
    local: quire_server::local::LocalServer,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(origins: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let logs = origins
            .iter()
            .map(|o| {
                let mut cfg = LogConfig::new(o);
                cfg.max_batch = 1000;
                cfg
            })
            .collect();
        let local = quire_server::local::LocalServer::start(dir.path(), logs, Config::default())
            .await
            .unwrap();
        let client = LogClient::connect(local.url()).await.unwrap();
        Server {
            client,
            addr: local.addr,
            keys: local.keys.clone(),
            local,
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

    pub async fn stop(self) {
        self.local.stop().await;
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
            dedup,
            limits,
            ..LogOptions::new(
                origin,
                vec![signer],
                quire_server::highwater::HighWater::at(dir.join("log.highwater")),
            )
        },
    )
}
