//! The witness's outgoing work: pull mode (poll each log with an address and
//! check what it shows) and gossip (send every peer the latest cosigned
//! checkpoints, at once when something new was cosigned and in full every
//! interval, with the evidence held).

use std::collections::HashMap;
use std::time::Duration;

use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::{GossipRequest, GossipVerdict};
use tokio::sync::watch;

use crate::config::Peer;
use crate::service::{MAX_GOSSIP_CHECKPOINTS, MAX_GOSSIP_EVIDENCE};
use crate::witness::{lazy_channel, Verdict, Witness};

/// Polls every log with an address each `interval` until `stop` turns true.
pub async fn pull_loop(witness: Witness, interval: Duration, mut stop: watch::Receiver<bool>) {
    let origins = witness.polled_logs();
    if origins.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for origin in &origins {
            let (v, detail) = witness.poll(origin).await;
            match v {
                Verdict::Conflict => {
                    tracing::warn!(origin = %origin, detail = %detail, "pull: split view");
                }
                Verdict::Unchecked | Verdict::Rejected => {
                    tracing::debug!(origin = %origin, verdict = ?v, detail = %detail, "pull");
                }
                Verdict::Consistent => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}

/// Gossips with `peer` until `stop` turns true: what changed as soon as it
/// changes, and everything (with the evidence held) every `interval`.
pub async fn gossip_loop(
    witness: Witness,
    peer: Peer,
    interval: Duration,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let channel = match lazy_channel(&peer.url, timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(peer = %peer.url, error = %e, "gossip peer unusable");
            return;
        }
    };
    let mut client = WitnessClient::new(channel).max_decoding_message_size(1 << 20);
    let me = witness.verifier().to_vkey();
    let mut generation = witness.state().generation();
    let mut sent: HashMap<String, (u64, quire_core::Hash)> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let full = tokio::select! {
            _ = tick.tick() => true,
            r = generation.changed() => {
                if r.is_err() { return; }
                false
            }
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        let all = witness.state().all_latest();
        let notes: Vec<Vec<u8>> = all
            .iter()
            .filter(|(o, l)| full || sent.get(o) != Some(&(l.size, l.root)))
            .map(|(_, l)| witness.with_cosignature(l))
            .collect();
        let evidence: Vec<String> = if full {
            witness
                .state()
                .evidence(None)
                .into_iter()
                .rev()
                .take(MAX_GOSSIP_EVIDENCE)
                .map(|r| r.json)
                .collect()
        } else {
            Vec::new()
        };
        if notes.is_empty() && evidence.is_empty() {
            continue;
        }
        let mut ok = true;
        let mut first = true;
        for chunk in notes.chunks(MAX_GOSSIP_CHECKPOINTS) {
            let mut req = tonic::Request::new(GossipRequest {
                checkpoints: chunk.to_vec(),
                source: me.clone(),
                evidence: if first { evidence.clone() } else { Vec::new() },
            });
            first = false;
            req.set_timeout(timeout);
            match client.gossip(req).await {
                Ok(resp) => {
                    for r in resp.into_inner().results {
                        if r.verdict == i32::from(GossipVerdict::Conflict) {
                            tracing::warn!(peer = %peer.url, detail = %r.detail, "peer found a split view in our gossip");
                        }
                    }
                }
                Err(s) => {
                    ok = false;
                    tracing::debug!(peer = %peer.url, error = %s.message(), "gossip failed");
                    break;
                }
            }
        }
        if notes.is_empty() && !evidence.is_empty() {
            let mut req = tonic::Request::new(GossipRequest {
                checkpoints: Vec::new(),
                source: me.clone(),
                evidence,
            });
            req.set_timeout(timeout);
            ok = client.gossip(req).await.is_ok() && ok;
        }
        if ok {
            for (o, l) in all {
                sent.insert(o, (l.size, l.root));
            }
        }
    }
}
