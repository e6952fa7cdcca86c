//! How a log is witnessed: which witnesses, over which wire, with what
//! quorum, deadlines and fail mode.

use std::time::Duration;

use quire_core::VerifierKey;

/// What a witnessed wait does when the quorum does not come in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FailMode {
    /// Answer with the signed checkpoint and the cosignatures it has (the
    /// quorum only delays).
    #[default]
    Open,
    /// Fail the wait with UNAVAILABLE (the entry stays stored): no answer
    /// carries a checkpoint short of the quorum.
    Closed,
}

/// The wire a witness speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WitnessProtocol {
    /// Quire's `quire.v1.Witness` gRPC service.
    #[default]
    Grpc,
    /// C2SP `tlog-witness` over HTTP (`POST <url>/add-checkpoint`), as the
    /// public witness ecosystem speaks it.
    Http,
}

/// One witness the log asks.
#[derive(Clone, Debug)]
pub struct WitnessEndpoint {
    /// Its address.
    pub url: String,
    /// The wire it speaks.
    pub protocol: WitnessProtocol,
    /// Its cosignature/v1 key.
    pub key: VerifierKey,
}

/// How a log is witnessed.
#[derive(Clone, Debug)]
pub struct WitnessPolicy {
    /// The witnesses.
    pub witnesses: Vec<WitnessEndpoint>,
    /// Cosignatures that make a checkpoint witnessed.
    pub quorum: usize,
    /// Deadline of each call to a witness.
    pub timeout: Duration,
    /// How long a witnessed write or read waits for the quorum.
    pub wait: Duration,
    /// What happens when the wait ends without the quorum.
    pub fail: FailMode,
}
