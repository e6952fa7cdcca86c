//! The Prometheus endpoint: integration and RPC metrics by method and code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::{AddEntriesRequest, GetCheckpointRequest};
use quire_server::api::LogApi;
use quire_server::config::{Config, LogConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn metrics_count_entries_and_rpcs_by_code() {
    let handle = quire_server::metrics::install().expect("first recorder in this test binary");
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig::new("m.example/log");
    let config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let (log, _) =
        quire_server::open_redb_log(&config, &dir.path().join("high-water"), &cfg, true).unwrap();
    let config = Config::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mlistener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maddr = mlistener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(quire_server::metrics::serve(
        mlistener,
        handle,
        std::future::pending(),
    ));
    let server = tokio::spawn(async move {
        quire_server::serve(listener, LogApi::new(vec![log]), &config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let mut c = LogClient::connect(format!("http://{addr}")).await.unwrap();
    let entries = (0..10u8).map(|i| vec![i + 1]).collect();
    c.add_entries(AddEntriesRequest {
        log: String::new(),
        entries,
        with_proof: false,
        witnessed: false,
    })
    .await
    .unwrap();
    assert!(c
        .get_checkpoint(GetCheckpointRequest {
            log: "nope".into(),
            witnessed: false
        })
        .await
        .is_err());

    let body = get(maddr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let has = |needle: &str| body.lines().any(|l| l.starts_with(needle));
    assert!(
        has("quire_entries_integrated_total{log=\"m.example/log\"} 10"),
        "{body}"
    );
    assert!(has("quire_tree_size{log=\"m.example/log\"} 10"), "{body}");
    assert!(
        has("quire_batch_entries_count{log=\"m.example/log\"}"),
        "{body}"
    );
    assert!(
        has("quire_integration_seconds_bucket{log=\"m.example/log\""),
        "{body}"
    );
    assert!(has("quire_queue_depth{log=\"m.example/log\"}"), "{body}");
    assert!(
        has("quire_oldest_unintegrated_age_seconds{log=\"m.example/log\"}"),
        "{body}"
    );
    assert!(
        has("quire_rpc_requests_total{method=\"/quire.v1.Log/AddEntries\",code=\"OK\"} 1"),
        "{body}"
    );
    assert!(
        has("quire_rpc_requests_total{method=\"/quire.v1.Log/GetCheckpoint\",code=\"NotFound\"} 1"),
        "{body}"
    );
    assert!(
        has("quire_rpc_seconds_bucket{method=\"/quire.v1.Log/AddEntries\",code=\"OK\""),
        "{body}"
    );
    // The budget of bytes in flight, by default 256 MiB, and its use.
    assert!(has("quire_memory_budget_bytes 268435456"), "{body}");
    assert!(has("quire_memory_budget_used_bytes "), "{body}");
    assert!(get(maddr, "/other").await.starts_with("HTTP/1.1 404"));
    // A head that fills the 8 KiB limit without ending: refused, naming the
    // limit. (Exactly the limit is sent, so nothing is left unread.)
    let mut s = tokio::net::TcpStream::connect(maddr).await.unwrap();
    let mut head = b"GET /metrics HTTP/1.1\r\nx: ".to_vec();
    head.resize(8192, b'y');
    s.write_all(&head).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(
        out.starts_with("HTTP/1.1 431") && out.contains("8192 bytes"),
        "{out}"
    );
    let _ = stop.send(());
    server.await.unwrap();
}
