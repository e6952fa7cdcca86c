//! Hostile input over every RPC and endpoint of a running `quire-server`
//! process: bytes that are not protobuf, truncated messages, messages over
//! the size limit, junk on the gRPC and metrics ports, unknown logs, indexes
//! and sizes at 0, at the tree size, past it and at `u64::MAX`, hashes of the
//! wrong length, empty and oversized entries and batches, and streams
//! cancelled half-way. Each must get an error that names the problem, while
//! an honest client keeps writing and verifying throughout, and the server's
//! memory returns to where it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;
#[path = "hostile/raw.rs"]
mod raw;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use prost::Message as _;
use quire_core::{leaf_hash, verify_inclusion, VerifierKey};
use quire_proto::hashes_from_wire;
use quire_proto::v1::get_inclusion_proof_request::Leaf;
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::*;
use tonic::transport::Channel;
use tonic::Code;

use common::checkpoint;
use common::process::{log_keys, ServerProcess};
use raw::{budget_freed, raw_unary, rss_kib, server_streaming_first};

const UNARY: [&str; 7] = [
    "AddEntry",
    "AddEntries",
    "GetCheckpoint",
    "GetInclusionProof",
    "GetConsistencyProof",
    "GetEntryWithProof",
    "ListLogs",
];
const STREAMING: [&str; 3] = ["GetEntries", "WatchCheckpoints", "TailEntries"];

fn assert_status(
    r: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    text: &str,
    what: &str,
) {
    let e = r.expect_err(what);
    assert_eq!(e.code(), code, "{what}: {e:?}");
    assert!(
        e.message().contains(text),
        "{what}: {:?} should mention {text:?}",
        e.message()
    );
}

fn inclusion(leaf: Option<Leaf>, tree_size: u64) -> GetInclusionProofRequest {
    GetInclusionProofRequest {
        log: String::new(),
        leaf,
        tree_size,
    }
}

fn consistency(old_size: u64, new_size: u64, with_seed: bool) -> GetConsistencyProofRequest {
    GetConsistencyProofRequest {
        log: String::new(),
        old_size,
        new_size,
        with_seed,
    }
}

fn entries(start: u64, end: u64) -> GetEntriesRequest {
    GetEntriesRequest {
        log: String::new(),
        start,
        end,
    }
}

fn add(entries: Vec<Vec<u8>>) -> AddEntriesRequest {
    AddEntriesRequest {
        log: String::new(),
        entries,
        ..Default::default()
    }
}

fn add1(entry: Vec<u8>) -> AddEntryRequest {
    AddEntryRequest {
        log: String::new(),
        entry,
        ..Default::default()
    }
}

/// An honest client: writes one entry and verifies its inclusion proof
/// against the signed checkpoint it comes with.
async fn honest_write(c: &mut LogClient<Channel>, keys: &[VerifierKey], n: u64) {
    let entry = format!("{{\"honest\":{n}}}").into_bytes();
    let r = c
        .add_entry(AddEntryRequest {
            log: String::new(),
            entry: entry.clone(),
            with_proof: true,
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner();
    let cp = checkpoint(&r.checkpoint, keys);
    verify_inclusion(
        &leaf_hash(&entry),
        r.index,
        cp.size(),
        &hashes_from_wire(&r.inclusion_proof).unwrap(),
        cp.root(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_clear_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        &dir.path().join("data"),
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = server.metrics.clone().expect("the server serves metrics");
    let url = format!("http://{}", server.addr);
    let channel = Channel::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = LogClient::new(channel.clone())
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let keys = log_keys(&mut c).await;
    c.add_entries(AddEntriesRequest {
        log: String::new(),
        entries: (0..1000u32)
            .map(|i| format!("{{\"n\":{i}}}").into_bytes())
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let size = 1000u64;
    honest_write(&mut c, &keys, 0).await;
    let size = size + 1;
    let pid = server.child.id();
    let before = rss_kib(pid);

    // An honest writer runs beside everything that follows.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let honest = {
        let mut c = LogClient::connect(url.clone()).await.unwrap();
        let keys = keys.clone();
        tokio::spawn(async move {
            let mut n = 1;
            while !*stop_rx.borrow_and_update() {
                honest_write(&mut c, &keys, n).await;
                n += 1;
            }
            n
        })
    };

    // Not protobuf, and truncated protobuf, to every method.
    let valid = add(vec![b"abcdefgh".to_vec(); 4]).encode_to_vec();
    let truncated = valid[..valid.len() - 3].to_vec();
    let garbage = vec![0xff_u8; 64];
    for method in UNARY {
        for (what, body) in [("garbage", &garbage), ("truncated", &truncated)] {
            let r = raw_unary(channel.clone(), method, body.clone()).await;
            assert_status(
                r,
                Code::InvalidArgument,
                "failed to decode Protobuf message",
                &format!("{method} {what}"),
            );
        }
    }
    for method in STREAMING {
        for (what, body) in [("garbage", &garbage), ("truncated", &truncated)] {
            let r = server_streaming_first(channel.clone(), method, body.clone()).await;
            assert_status(
                r,
                Code::InvalidArgument,
                "failed to decode Protobuf message",
                &format!("{method} {what}"),
            );
        }
    }
    // An unknown method.
    assert_status(
        raw_unary(channel.clone(), "DeleteEverything", valid.clone()).await,
        Code::Unimplemented,
        "",
        "unknown method",
    );
    // One byte over the 64 MiB message limit: refused by its length prefix.
    let huge = add1(vec![7; 64 * 1024 * 1024]);
    assert_status(
        c.add_entry(huge).await,
        Code::OutOfRange,
        "67108864",
        "message over the limit",
    );

    // Unknown logs, on every method that names one.
    let nope = || "nope.example/log".to_string();
    let unknown: [(&str, Vec<u8>); 9] = [
        (
            "AddEntry",
            AddEntryRequest {
                log: nope(),
                entry: b"x".to_vec(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "AddEntries",
            AddEntriesRequest {
                log: nope(),
                entries: vec![b"x".to_vec()],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "GetCheckpoint",
            GetCheckpointRequest {
                log: nope(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "GetInclusionProof",
            GetInclusionProofRequest {
                log: nope(),
                leaf: Some(Leaf::Index(0)),
                tree_size: 0,
            }
            .encode_to_vec(),
        ),
        (
            "GetConsistencyProof",
            GetConsistencyProofRequest {
                log: nope(),
                old_size: 1,
                new_size: 2,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "GetEntryWithProof",
            GetEntryWithProofRequest {
                log: nope(),
                index: 0,
            }
            .encode_to_vec(),
        ),
        (
            "GetEntries",
            GetEntriesRequest {
                log: nope(),
                start: 0,
                end: 1,
            }
            .encode_to_vec(),
        ),
        (
            "WatchCheckpoints",
            GetCheckpointRequest {
                log: nope(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "TailEntries",
            TailEntriesRequest {
                log: nope(),
                start: 0,
            }
            .encode_to_vec(),
        ),
    ];
    for (method, body) in unknown {
        let r = if STREAMING.contains(&method) {
            server_streaming_first(channel.clone(), method, body)
                .await
                .map(|_| Vec::new())
        } else {
            raw_unary(channel.clone(), method, body).await
        };
        assert_status(
            r,
            Code::NotFound,
            "nope.example/log",
            &format!("{method} unknown log"),
        );
    }

    // Entries and batches: empty, oversized, too many. A batch with one bad
    // entry stores none of it.
    assert_status(
        c.add_entry(add1(Vec::new())).await,
        Code::InvalidArgument,
        "empty",
        "empty entry",
    );
    assert_status(
        c.add_entry(add1(vec![1; 65536])).await,
        Code::InvalidArgument,
        "65535",
        "entry over the limit",
    );
    assert_status(
        c.add_entries(add(Vec::new())).await,
        Code::InvalidArgument,
        "no entries",
        "empty batch",
    );
    assert_status(
        c.add_entries(add(vec![b"ok".to_vec(), Vec::new()])).await,
        Code::InvalidArgument,
        "entry 1",
        "batch with an empty entry",
    );
    assert_status(
        c.add_entries(add(vec![b"ok".to_vec(); 1001])).await,
        Code::InvalidArgument,
        "1000",
        "batch over the limit",
    );

    // Indexes and sizes at 0, at the tree size, past it and at u64::MAX.
    // (The honest writer grows the tree, so "past" is measured far past.)
    let far = 1u64 << 40;
    for (index, ok) in [(0, true), (size - 1, true), (far, false), (u64::MAX, false)] {
        let r = c
            .get_inclusion_proof(inclusion(Some(Leaf::Index(index)), size))
            .await;
        if ok {
            let p = r.unwrap().into_inner();
            assert_eq!(p.tree_size, size);
        } else {
            assert_status(
                r,
                Code::OutOfRange,
                &format!("index {index}"),
                "inclusion index",
            );
        }
        let r = c
            .get_entry_with_proof(GetEntryWithProofRequest {
                log: String::new(),
                index,
            })
            .await;
        if ok {
            r.unwrap();
        } else {
            assert_status(
                r,
                Code::OutOfRange,
                &format!("index {index}"),
                "entry index",
            );
        }
    }
    assert_status(
        c.get_inclusion_proof(inclusion(Some(Leaf::Index(size)), size))
            .await,
        Code::OutOfRange,
        &format!("index {size}"),
        "index at the size",
    );
    assert_status(
        c.get_inclusion_proof(inclusion(Some(Leaf::Index(0)), far))
            .await,
        Code::OutOfRange,
        "beyond the latest",
        "size past",
    );
    assert_status(
        c.get_inclusion_proof(inclusion(Some(Leaf::Index(0)), u64::MAX))
            .await,
        Code::OutOfRange,
        "beyond the latest",
        "size u64::MAX",
    );
    for len in [0usize, 31, 33, 64] {
        assert_status(
            c.get_inclusion_proof(inclusion(Some(Leaf::LeafHash(vec![1; len])), 0))
                .await,
            Code::InvalidArgument,
            "32 bytes",
            &format!("leaf hash of {len} bytes"),
        );
    }
    assert_status(
        c.get_consistency_proof(consistency(0, size, false)).await,
        Code::InvalidArgument,
        "size 0",
        "consistency from 0",
    );
    assert_status(
        c.get_consistency_proof(consistency(1, far, false)).await,
        Code::OutOfRange,
        "beyond the latest",
        "consistency to far",
    );
    assert_status(
        c.get_consistency_proof(consistency(u64::MAX, u64::MAX, true))
            .await,
        Code::OutOfRange,
        "beyond the latest",
        "consistency at u64::MAX",
    );
    assert_status(
        c.get_consistency_proof(consistency(size, size - 1, false))
            .await,
        Code::InvalidArgument,
        "smaller size",
        "consistency backwards",
    );
    let p = c
        .get_consistency_proof(consistency(size, size, false))
        .await
        .unwrap()
        .into_inner();
    assert!(p.proof.is_empty());
    assert_status(
        c.get_entries(entries(far, 0)).await,
        Code::OutOfRange,
        &format!("start {far}"),
        "entries past",
    );
    assert_status(
        c.get_entries(entries(u64::MAX, 0)).await,
        Code::OutOfRange,
        "start 18446744073709551615",
        "entries at u64::MAX",
    );
    assert_status(
        c.get_entries(entries(u64::MAX, u64::MAX)).await,
        Code::InvalidArgument,
        "not below the end",
        "entries: an empty range",
    );
    assert_status(
        c.get_entries(entries(5, 2)).await,
        Code::InvalidArgument,
        "end 2",
        "entries backwards",
    );
    assert_status(
        c.tail_entries(TailEntriesRequest {
            log: String::new(),
            start: u64::MAX,
        })
        .await,
        Code::OutOfRange,
        "start 18446744073709551615",
        "tail at u64::MAX",
    );

    // Streams cancelled half-way, many at once: each reads one message and
    // drops the stream.
    let mut cancelled = Vec::new();
    for i in 0..60u64 {
        let mut c = c.clone();
        cancelled.push(tokio::spawn(async move {
            match i % 3 {
                0 => {
                    let mut s = c.get_entries(entries(0, 0)).await.unwrap().into_inner();
                    assert!(s.message().await.unwrap().is_some());
                }
                1 => {
                    let mut s = c
                        .tail_entries(TailEntriesRequest {
                            log: String::new(),
                            start: 0,
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    assert!(s.message().await.unwrap().is_some());
                }
                _ => {
                    let mut s = c
                        .watch_checkpoints(GetCheckpointRequest {
                            log: String::new(),
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    assert!(s.message().await.unwrap().is_some());
                }
            }
        }));
    }
    for t in cancelled {
        t.await.unwrap();
    }

    // Junk on the gRPC port: the connection is closed, nobody else notices.
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0u8; 4096][..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.write_all(junk).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }

    // Memory: many large requests that are refused after decoding (each
    // holds about 59 MB), four at a time, on four connections, in two
    // rounds. After each round the budget of bytes in flight must be free
    // again (a request kept would keep its bytes reserved), and the
    // process's peak memory must stay under what four requests in flight
    // can take: requests kept from a round (16 × 59 MB each) would show
    // far past it. What the allocator keeps for reuse after a round is its
    // own affair and no measure of a leak, so it is only reported.
    let flood = |url: String| async move {
        let mut floods = Vec::new();
        for _ in 0..4 {
            let ch = Channel::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut c = LogClient::new(ch).max_encoding_message_size(usize::MAX);
            floods.push(tokio::spawn(async move {
                for _ in 0..4 {
                    let mut entries = vec![vec![9u8; 65535]; 900];
                    entries[899] = vec![9u8; 65536];
                    let r = c.add_entries(add(entries)).await;
                    assert_eq!(r.unwrap_err().code(), Code::InvalidArgument);
                }
            }));
        }
        for f in floods {
            f.await.unwrap();
        }
    };
    let (total, in_flight) = budget_freed(&metrics).await;
    assert_eq!(total, 256 << 20, "the default budget");
    assert!(in_flight < 1 << 20, "{in_flight} bytes in flight before");
    flood(url.clone()).await;
    let in_flight_one = budget_freed(&metrics).await.1;
    let after_one = rss_kib(pid);
    flood(url.clone()).await;
    let in_flight_two = budget_freed(&metrics).await.1;
    let after_two = rss_kib(pid);

    stop_tx.send(true).unwrap();
    let honest_writes = honest.await.unwrap();
    assert!(honest_writes > 1);

    // Nothing hostile was stored: the tree holds exactly the prefill and the
    // honest writes, and it still verifies.
    let cp = common::process::latest(&mut c, &keys).await;
    assert_eq!(cp.size(), size + honest_writes - 1);
    // Memory: no request is kept (its bytes are back in the budget after
    // each round), and the process stays under the four requests in flight,
    // each 59 MB: at most about 2.7 times that per request (tonic's buffer
    // as it grows, then the decoded entries).
    let peak = raw::hwm_kib(pid);
    eprintln!(
        "server RSS: {before} KiB before, {after_one} KiB after one round, {after_two} KiB after two, peak {peak} KiB; budget in use after each round: {in_flight_one}, {in_flight_two} bytes"
    );
    for (round, bytes) in [(1, in_flight_one), (2, in_flight_two)] {
        assert!(
            bytes < 1 << 20,
            "{bytes} bytes of the budget still reserved after round {round}"
        );
    }
    assert!(
        peak < before + 4 * 160 * 1024,
        "peak RSS {peak} KiB, {before} KiB before"
    );
}
