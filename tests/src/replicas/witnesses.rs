//! The witnesses of a log on replicas, the fork detector of the fault
//! tests: each is offered every checkpoint any replica serves, with a
//! consistency proof from the replica that served it.

use std::net::SocketAddr;

use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::{AddCheckpointRequest, GetConsistencyProofRequest, GetLatestRequest};
use tonic::transport::Channel;

use super::{size_of, Replicas};
use crate::{witness_config, LogSpec, WitnessProcess};

impl Replicas {
    /// Starts `n` witnesses of the log (after the first replica, whose
    /// keys they trust), fed by [`Self::sample`].
    pub fn start_witnesses(&mut self, n: usize) {
        let keys = vec![self.vkey().to_vkey()];
        for i in 0..n {
            let cfg = witness_config(
                &self.dir.join(format!("witness{i}")),
                &format!("replicas.example/witness{i}"),
                &[LogSpec {
                    origin: &self.origin,
                    keys: keys.clone(),
                    url: None,
                }],
                &[],
                60_000,
            );
            let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
            self.witnesses.push(WitnessProcess::start(&cfg, any));
        }
    }

    /// Offers `note`, served by replica `from`, to every witness, with a
    /// consistency proof from that replica. A witness ahead of it refuses
    /// (it has moved on); a proof that does not verify, or evidence, fails
    /// the test here or in [`Self::verify`].
    pub(super) async fn feed(&self, from: &str, note: &[u8]) {
        let size = size_of(note);
        for w in &self.witnesses {
            let mut wc = WitnessClient::new(Channel::from_shared(w.url()).unwrap().connect_lazy());
            let latest = self.witnessed(&mut wc).await;
            let old = if latest.is_empty() {
                0
            } else {
                size_of(&latest)
            };
            if old > size {
                continue;
            }
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                let mut lc = LogClient::new(
                    Channel::from_shared(self.procs[from].url())
                        .unwrap()
                        .connect_lazy(),
                );
                match lc
                    .get_consistency_proof(GetConsistencyProofRequest {
                        log: self.origin.clone(),
                        old_size: old,
                        new_size: size,
                        with_seed: false,
                    })
                    .await
                {
                    Ok(r) => r.into_inner().proof,
                    Err(_) => continue,
                }
            };
            let r = wc
                .add_checkpoint(AddCheckpointRequest {
                    old_size: old,
                    proof,
                    checkpoint: note.to_vec(),
                })
                .await;
            match r {
                Ok(_) => {}
                // It has moved on meanwhile, or it holds another root for
                // the size: evidence, which `verify` looks for.
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
                Err(s) => panic!(
                    "witness refused size {size} served by {from} (old {old}): {} {}",
                    s.code(),
                    s.message()
                ),
            }
        }
    }

    /// The witness's latest cosigned checkpoint of the log (empty: none).
    pub(super) async fn witnessed(&self, wc: &mut WitnessClient<Channel>) -> Vec<u8> {
        wc.get_latest(GetLatestRequest {
            origin: self.origin.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
    }
}
