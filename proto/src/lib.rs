//! # quire-proto
//!
//! The gRPC protocol `quire.v1` (`proto/quire/v1/*.proto`), compiled with
//! protox (no system `protoc`), and the only conversions between protobuf
//! messages and `quire-core` types ([`hash_from_wire`], [`hashes_from_wire`],
//! [`hashes_to_wire`], [`event_from_wire`], [`event_to_wire`]), and a codec
//! of messages already encoded ([`raw::Raw`]).

use quire_core::{Hash, HashLengthError};

/// Generated messages, client and server of package `quire.v1`.
#[allow(missing_docs, clippy::pedantic, clippy::all)]
pub mod v1 {
    tonic::include_proto!("quire.v1");
}

pub mod raw;

/// The encoded `FileDescriptorSet` of the protocol, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/quire_descriptor.bin"));

/// Longest list of hashes accepted from the wire (a proof never needs more).
pub const MAX_WIRE_HASHES: usize = quire_core::MAX_PROOF_LEN;

/// A hash from its wire form (32 raw bytes).
///
/// # Errors
/// [`HashLengthError`] when it is not 32 bytes.
pub fn hash_from_wire(bytes: &[u8]) -> Result<Hash, HashLengthError> {
    Hash::from_slice(bytes)
}

/// An optional hash from its wire form: empty means none (proto3 `bytes`
/// fields such as a consistency proof's seed).
///
/// # Errors
/// [`HashLengthError`] when it is neither empty nor 32 bytes.
pub fn optional_hash_from_wire(bytes: &[u8]) -> Result<Option<Hash>, HashLengthError> {
    if bytes.is_empty() {
        Ok(None)
    } else {
        hash_from_wire(bytes).map(Some)
    }
}

/// A list of hashes that did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireHashesError {
    /// More hashes than any proof has.
    #[error("{got} hashes; the limit is {MAX_WIRE_HASHES}")]
    TooMany {
        /// Hashes given.
        got: usize,
    },
    /// One hash has the wrong length.
    #[error("hash {index}: {source}")]
    Length {
        /// Position in the list.
        index: usize,
        /// Why.
        source: HashLengthError,
    },
}

/// Hashes from their wire form, the count checked before decoding.
///
/// # Errors
/// [`WireHashesError`] naming the first bad hash or the limit.
pub fn hashes_from_wire(list: &[Vec<u8>]) -> Result<Vec<Hash>, WireHashesError> {
    if list.len() > MAX_WIRE_HASHES {
        return Err(WireHashesError::TooMany { got: list.len() });
    }
    list.iter()
        .enumerate()
        .map(|(index, b)| {
            hash_from_wire(b).map_err(|source| WireHashesError::Length { index, source })
        })
        .collect()
}

/// Hashes in their wire form.
pub fn hashes_to_wire(hashes: &[Hash]) -> Vec<Vec<u8>> {
    hashes.iter().map(|h| h.0.to_vec()).collect()
}

/// The core event of a wire event (its payload aside, which the caller
/// takes as it is): empty strings are fields not said.
///
/// # Errors
/// [`quire_core::event::EventError`] for an outcome that is not one of the
/// three; the other rules are checked where the event is used.
pub fn event_from_wire(
    e: &v1::Event,
) -> Result<quire_core::event::Event, quire_core::event::EventError> {
    use quire_core::event::Outcome;
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(quire_core::event::Event {
        kind: e.r#type.clone(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        resource: some(&e.resource),
        outcome: if e.outcome.is_empty() {
            Outcome::Unknown
        } else {
            Outcome::parse(&e.outcome)?
        },
        source: some(&e.source),
        occurred_ms: e.occurred_ms,
        attributes: e.attributes.clone().into_iter().collect(),
    })
}

/// The wire event of a core event and its payload.
pub fn event_to_wire(e: &quire_core::event::Event, payload: Option<Vec<u8>>) -> v1::Event {
    v1::Event {
        r#type: e.kind.clone(),
        actor: e.actor.clone(),
        action: e.action.clone(),
        resource: e.resource.clone().unwrap_or_default(),
        outcome: e.outcome.as_str().to_owned(),
        source: e.source.clone().unwrap_or_default(),
        occurred_ms: e.occurred_ms,
        attributes: e.attributes.clone().into_iter().collect(),
        payload: payload.unwrap_or_default(),
    }
}
