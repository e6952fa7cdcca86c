//! `quire gossip`: hand a signed checkpoint you were shown to witnesses,
//! which compare it with their own view of the log (asking the log for a
//! consistency proof when the sizes differ) and keep evidence of a split
//! view. A view shown to one client alone is caught this way too.

use std::path::Path;
use std::time::Duration;

use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::{GossipRequest, GossipVerdict};

use super::{read_limited, Failure};

/// Hands `checkpoint` to each witness. Exit 1 when one finds a conflict,
/// 2 when one rejects the checkpoint, 3 when one cannot be reached.
pub(crate) async fn gossip(
    json: bool,
    checkpoint: &Path,
    witnesses: &[String],
    timeout: Duration,
) -> Result<(), Failure> {
    let note = read_limited(
        checkpoint,
        quire_core::note::MAX_NOTE_BYTES as u64,
        "checkpoint",
    )?;
    quire_core::Note::parse(&note)
        .map_err(|e| Failure::Input(format!("{}: {e}", checkpoint.display())))?;
    let mut results = Vec::new();
    let mut worst: Option<Failure> = None;
    for url in witnesses {
        let verdict = ask(url, &note, timeout).await;
        let (name, detail) = match &verdict {
            Ok((v, d)) => (
                v.as_str_name()
                    .trim_start_matches("GOSSIP_VERDICT_")
                    .to_lowercase(),
                d.clone(),
            ),
            Err(e) => ("unreachable".to_owned(), e.clone()),
        };
        let failure = match verdict {
            Ok((GossipVerdict::Conflict, d)) => Some(Failure::Verify(format!(
                "witness {url} holds evidence of a split view: {d}"
            ))),
            Ok((GossipVerdict::Rejected, d)) => {
                Some(Failure::Input(format!("witness {url} rejected it: {d}")))
            }
            Err(e) => Some(Failure::Unreachable(format!("witness {url}: {e}"))),
            Ok(_) => None,
        };
        // The most serious outcome decides the exit code.
        if let Some(f) = failure {
            if worst.as_ref().is_none_or(|w| rank(&f) > rank(w)) {
                worst = Some(f);
            }
        }
        if !json {
            println!("{url}: {name}: {detail}");
        }
        results.push(serde_json::json!({"witness": url, "verdict": name, "detail": detail}));
    }
    if json {
        println!("{}", serde_json::json!({"results": results}));
    }
    worst.map_or(Ok(()), Err)
}

fn rank(f: &Failure) -> u8 {
    match f {
        Failure::Verify(_) | Failure::Proven => 3,
        Failure::Input(_) => 2,
        Failure::Unreachable(_) => 1,
    }
}

async fn ask(url: &str, note: &[u8], timeout: Duration) -> Result<(GossipVerdict, String), String> {
    let ep = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("address {url:?}: {e}"))?
        .timeout(timeout)
        .connect_timeout(timeout);
    let mut c = WitnessClient::new(ep.connect().await.map_err(|e| e.to_string())?);
    let r = c
        .gossip(GossipRequest {
            checkpoints: vec![note.to_vec()],
            source: "quire gossip".into(),
            evidence: Vec::new(),
        })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let first = r.results.first().ok_or("the witness answered nothing")?;
    let v = GossipVerdict::try_from(first.verdict).unwrap_or(GossipVerdict::Unspecified);
    Ok((v, first.detail.clone()))
}
