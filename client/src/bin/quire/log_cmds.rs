//! The commands that talk to a log about one entry or checkpoint, or check
//! a bundle offline: `keygen`, `add`, `prove`, `checkpoint`, `verify`.

use std::path::PathBuf;

use quire_client::bundle::{BundleVerifier, Subject};
use quire_client::policy::LogTrust;
use quire_client::rpc::LogRpc;
use quire_core::tlog_proof::TlogProof;
use quire_core::{LogKeyAlgorithm, LogSigner, WitnessSigner};

use super::{
    connect_trusted, endpoint, latest_verified, print, read_limited, trust_of, write_file, Failure,
    KeyKind, Net, Trust, MAX_ENTRY_FILE,
};

pub(crate) fn keygen(json: bool, kind: KeyKind, name: &str, out: &PathBuf) -> Result<(), Failure> {
    let (private, public) = match kind {
        KeyKind::LogEd25519 | KeyKind::LogP256 => {
            let alg = if matches!(kind, KeyKind::LogP256) {
                LogKeyAlgorithm::EcdsaP256
            } else {
                LogKeyAlgorithm::Ed25519
            };
            let k = LogSigner::generate(alg, name).map_err(|e| Failure::Input(e.to_string()))?;
            (k.to_private_text(), k.verifier())
        }
        KeyKind::Witness => {
            let k = WitnessSigner::generate(name).map_err(|e| Failure::Input(e.to_string()))?;
            (k.to_private_text(), k.verifier())
        }
    };
    write_private(out, &private)?;
    let vkey = public.to_vkey();
    print(
        json,
        &vkey,
        &serde_json::json!({"vkey": vkey, "private_key_file": out}),
    );
    Ok(())
}

pub(crate) async fn add(
    json: bool,
    file: &std::path::Path,
    wait: Option<PathBuf>,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    let entry = read_limited(file, MAX_ENTRY_FILE, "entry")?;
    let mut rpc = LogRpc::connect(&endpoint(net)).await?;
    let origin = trust.origin.clone().unwrap_or_default();
    // A policy that needs cosignatures waits for a witnessed checkpoint.
    rpc.set_witnessed(trust.quorum > 0);
    match wait {
        None => {
            let (added, log) = rpc.add_to(&origin, entry).await?;
            // A family's shard: say which one took it.
            let shard = if !log.is_empty() && log != origin {
                format!(" in log {log}")
            } else {
                String::new()
            };
            // Nothing here checked the log's answer: say so, and how.
            let unverified = if trust.log_keys.is_empty() {
                "; not verified: the log's answer was taken as given (use --wait FILE --log-key KEY for a verified proof)"
            } else {
                "; not verified yet: --wait FILE writes a proof verified against --log-key"
            };
            print(
                json,
                &format!(
                    "index {}{shard}{}{unverified}",
                    added.index,
                    if added.duplicate {
                        " (duplicate: already in the log)"
                    } else {
                        ""
                    }
                ),
                &serde_json::json!({"index": added.index.to_string(), "log": log, "duplicate": added.duplicate, "verified": false}),
            );
        }
        Some(out) => {
            let t = trust_of(trust, rpc.default_origin(&origin).await?.as_deref())?;
            let (added, proof) = rpc.add_and_prove(&t.origin, entry.clone()).await?;
            let v = BundleVerifier::new(t)
                .verify_parsed(&proof, Subject::Entry(&entry))
                .map_err(|e| Failure::Verify(e.to_string()))?;
            write_file(&out, &proof.to_bytes())?;
            print(
                json,
                &format!(
                    "index {}{}\nin checkpoint of size {}, root {}\nbundle written to {}",
                    added.index,
                    if added.duplicate {
                        " (duplicate: already in the log)"
                    } else {
                        ""
                    },
                    v.checkpoint.size(),
                    v.checkpoint.root(),
                    out.display()
                ),
                &serde_json::json!({
                    "index": added.index.to_string(),
                    "duplicate": added.duplicate,
                    "tree_size": v.checkpoint.size().to_string(),
                    "root": v.checkpoint.root().to_base64(),
                    "bundle": out,
                }),
            );
        }
    }
    Ok(())
}

/// A bundle for the entry with leaf hash `leaf`, in the latest verified
/// checkpoint (not yet verified itself).
async fn by_leaf(
    rpc: &mut LogRpc,
    t: &LogTrust,
    leaf: quire_core::Hash,
    entry: Option<Vec<u8>>,
) -> Result<TlogProof, Failure> {
    let (note, cp) = latest_verified(rpc, t).await?;
    let (index, proof) = rpc.inclusion(&t.origin, None, leaf, cp.size()).await?;
    Ok(TlogProof {
        extra: entry,
        index,
        proof,
        checkpoint: note,
    })
}

/// Which entry to prove.
pub(crate) enum Which {
    Index(u64),
    Entry(Vec<u8>),
    Leaf(quire_core::Hash),
}

pub(crate) async fn prove(
    json: bool,
    which: Which,
    out: &PathBuf,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    let (mut rpc, t) = connect_trusted(net, trust).await?;
    let (proof, subject_leaf) = match which {
        Which::Index(i) => (rpc.entry_with_proof(&t.origin, i).await?, None),
        Which::Entry(entry) => {
            let leaf = quire_core::leaf_hash(&entry);
            (by_leaf(&mut rpc, &t, leaf, Some(entry)).await?, Some(leaf))
        }
        Which::Leaf(leaf) => (by_leaf(&mut rpc, &t, leaf, None).await?, Some(leaf)),
    };
    let index = proof.index;
    let subject = subject_leaf.map_or(Subject::Carried, Subject::Leaf);
    let v = BundleVerifier::new(t)
        .verify_parsed(&proof, subject)
        .map_err(|e| Failure::Verify(e.to_string()))?;
    write_file(out, &proof.to_bytes())?;
    print(
        json,
        &format!(
            "entry {index} proven in checkpoint of size {}; bundle written to {}",
            v.checkpoint.size(),
            out.display()
        ),
        &serde_json::json!({"index": index.to_string(), "tree_size": v.checkpoint.size().to_string(), "bundle": out}),
    );
    Ok(())
}

pub(crate) async fn checkpoint(json: bool, net: &Net, trust: &Trust) -> Result<(), Failure> {
    let (mut rpc, t) = connect_trusted(net, trust).await?;
    let (note, cp) = latest_verified(&mut rpc, &t).await?;
    let note_bytes = note.to_bytes();
    print(
        json,
        String::from_utf8_lossy(&note_bytes).trim_end(),
        &serde_json::json!({"origin": cp.origin(), "tree_size": cp.size().to_string(), "root": cp.root().to_base64(), "note": String::from_utf8_lossy(&note_bytes)}),
    );
    Ok(())
}

pub(crate) fn verify(
    json: bool,
    bundle: &std::path::Path,
    entry: Option<PathBuf>,
    leaf_hash: Option<&str>,
    trust: &Trust,
) -> Result<(), Failure> {
    let bytes = read_limited(
        bundle,
        quire_core::tlog_proof::MAX_TLOG_PROOF_BYTES as u64,
        "bundle",
    )?;
    let proof = TlogProof::parse(&bytes)
        .map_err(|e| Failure::Input(format!("bundle {}: {e}", bundle.display())))?;
    let origin = quire_core::Checkpoint::parse(proof.checkpoint.text().as_bytes())
        .map(|c| c.origin().to_owned())
        .ok();
    let t = trust_of(trust, origin.as_deref())?;
    let entry = entry
        .map(|p| read_limited(&p, MAX_ENTRY_FILE, "entry"))
        .transpose()?;
    let leaf = leaf_hash
        .map(|h| {
            quire_core::Hash::from_base64(h)
                .map_err(|e| Failure::Input(format!("--leaf-hash: {e}")))
        })
        .transpose()?;
    let subject = match (entry.as_deref(), leaf) {
        (Some(e), _) => Subject::Entry(e),
        (None, Some(h)) => Subject::Leaf(h),
        (None, None) if proof.extra.is_none() => {
            return Err(Failure::Input(format!(
                "bundle {} carries no entry: give --entry FILE or --leaf-hash",
                bundle.display()
            )))
        }
        (None, None) => Subject::Carried,
    };
    let v = BundleVerifier::new(t)
        .verify_parsed(&proof, subject)
        .map_err(|e| Failure::Verify(format!("bundle {}: {e}", bundle.display())))?;
    print(
        json,
        &format!(
            "OK: entry {} (leaf {}) is in {} at size {}, root {}{}",
            v.index,
            v.leaf,
            v.checkpoint.origin(),
            v.checkpoint.size(),
            v.checkpoint.root(),
            if v.cosigned_by.is_empty() {
                String::new()
            } else {
                format!("; cosigned by {}", v.cosigned_by.join(", "))
            }
        ),
        &serde_json::json!({
            "verified": true,
            "index": v.index.to_string(),
            "leaf_hash": v.leaf.to_base64(),
            "origin": v.checkpoint.origin(),
            "tree_size": v.checkpoint.size().to_string(),
            "root": v.checkpoint.root().to_base64(),
            "cosigned_by": v.cosigned_by,
        }),
    );
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> Result<(), Failure> {
    quire_host::keyfile::write_private(path, text).map_err(|e| {
        Failure::Input(format!(
            "private key file {}: {e} (it is never overwritten)",
            path.display()
        ))
    })
}
