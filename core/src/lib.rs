//! # quire-core
//!
//! The pure library that Quire's server, witness, client and auditors share.
//! Synchronous, no I/O, no async runtime.
//!
//! **In scope**
//! - RFC 9162 §2.1 Merkle tree hashing ([`hash`]), node addressing with dense
//!   post-order numbers and C2SP `tlog-tiles` tile mapping ([`node`]), the
//!   compact range of a growing tree ([`compact`]), and the bytes of C2SP
//!   `tlog-tiles` tiles and entry bundles ([`tiles`]).
//! - Inclusion and consistency proofs, RFC 9162 §2.1.3 and §2.1.4: built in
//!   three steps, plan → one batched read → combine ([`proof`]), and verified
//!   with errors that carry both roots ([`verify`]); range proofs of a
//!   contiguous run of leaves ([`range`]).
//! - C2SP `tlog-checkpoint` ([`checkpoint`]), `signed-note` ([`note`]), key
//!   formats for Ed25519 (0x01), ECDSA P-256 (0x02) and witness keys
//!   ([`keys`]), `tlog-cosignature` cosignature/v1 ([`cosignature`]).
//! - Audit events: the `quire-event/v1` envelope of a log in event mode, its
//!   RFC 8785 canonical JSON and the keys of its links ([`event`];
//!   normative: `docs/EVENTS.md`).
//! - Split-view evidence that a third party checks with the log's key alone
//!   ([`evidence`]).
//!
//! **Out of scope**: storage, networking, clocks (callers pass timestamps),
//! ML-DSA cosignatures, RFC 6962 tree head signatures (type 0x05).
//!
//! Every parser checks a size limit before decoding, and has a fuzz target in
//! `fuzz/` whose body lives in [`fuzz_targets`].

pub mod checkpoint;
pub mod compact;
pub mod cosignature;
pub mod event;
pub mod evidence;
pub mod fuzz_targets;
pub mod hash;
pub mod keys;
pub mod map;
pub mod node;
pub mod note;
pub mod proof;
pub mod range;
pub mod tiles;
pub mod tlog_proof;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use compact::{CompactRange, CompactRangeError};
pub use evidence::{seeded_path, Conflict, EvidenceError, SplitViewEvidence};
pub use hash::{empty_root, leaf_hash, node_hash, perfect_root, Hash, HashLengthError, HASH_LEN};
pub use keys::{KeyError, KeyType, LogKeyAlgorithm, LogSigner, VerifierKey, WitnessSigner};
pub use node::{NodeId, TileId, TileSpan, MAX_TREE_SIZE};
pub use note::{Note, NoteError, NoteSignature, NoteVerifyError, VerifiedSignature};
pub use proof::{
    consistency_plan, inclusion_plan, prove_consistency, prove_inclusion, root_at, root_plan,
    HashReader, ProofPlan, ProofRequestError, ProveError,
};
pub use verify::{
    root_from_inclusion_proof, verify_consistency, verify_inclusion, ConsistencyError,
    ConsistencyMismatch, InclusionError, MAX_PROOF_LEN,
};
