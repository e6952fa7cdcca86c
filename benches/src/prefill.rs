//! A log brought up to a size before a measurement, and a server waited
//! for until it serves a verified checkpoint (`quire-bench --prefill`,
//! `--scenario ready`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quire_proto::v1::AddEntriesRequest;
use rand::SeedableRng;
use tonic::transport::Channel;

use crate::load::{self, Payload};

/// Tops an existing log up to `target` entries: 8 concurrent writers of
/// 1000-entry batches (so commits group).
///
/// # Errors
/// The log's answers: a refused write, a checkpoint that does not verify.
pub async fn prefill(
    channel: &Channel,
    bearer: Option<&str>,
    target: u64,
    payload: Payload,
    len: usize,
) -> anyhow::Result<()> {
    let mut client = crate::client(channel.clone(), bearer)?;
    let keys = load::log_keys(&mut client, "").await?;
    let have = load::verified_checkpoint(&mut client, "", &keys)
        .await?
        .size();
    let left = Arc::new(AtomicU64::new(target.saturating_sub(have)));
    let mut fill = Vec::new();
    for w in 0..8u64 {
        let mut c = client.clone();
        let left = Arc::clone(&left);
        fill.push(tokio::spawn(async move {
            // Seeded by the size already stored: a top-up writes new entries.
            let mut rng = rand::rngs::StdRng::seed_from_u64(have ^ (7 + w));
            let mut n_seq = (w + 1) << 40;
            loop {
                let Ok(taken) = left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                    (l > 0).then(|| l - l.min(1000))
                }) else {
                    return Ok::<(), tonic::Status>(());
                };
                let entries = (0..taken.min(1000))
                    .map(|_| {
                        n_seq += 1;
                        load::entry(&mut rng, payload, len, n_seq)
                    })
                    .collect();
                c.add_entries(AddEntriesRequest {
                    log: String::new(),
                    entries,
                    with_proof: false,
                    witnessed: false,
                })
                .await?;
            }
        }));
    }
    for f in fill {
        f.await??;
    }
    Ok(())
}

/// Polls `addr` until it answers with a checkpoint that verifies under the
/// keys it lists, and prints how long that took.
///
/// # Errors
/// Not serving after 120 s, naming the last failure.
pub async fn ready(addr: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let attempt = async {
            let channel = Channel::from_shared(addr.to_owned())?.connect().await?;
            let mut c = crate::client(channel, None)?;
            let keys = load::log_keys(&mut c, "").await?;
            load::verified_checkpoint(&mut c, "", &keys).await
        };
        match attempt.await {
            Ok(cp) => {
                println!(
                    "serving a verified checkpoint of size {} after {} ms",
                    cp.size(),
                    start.elapsed().as_millis()
                );
                return Ok(());
            }
            Err(e) if start.elapsed() > Duration::from_secs(120) => {
                anyhow::bail!("not serving after 120 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}
