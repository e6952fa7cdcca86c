//! # quire-server
//!
//! The log: durable storage (redb by default, behind [`store::Storage`]),
//! the batching sequencer, the checkpoint signer and the gRPC services.
//! Work in progress: storage is in place; the sequencer and services follow.

pub mod log;
pub mod store;
