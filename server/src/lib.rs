//! # quire-server
//!
//! The log server, library first: durable storage (redb by default, behind
//! [`store::Storage`]), the batching sequencer and signer ([`log`]), the
//! transport-neutral log API with its rules, caller and errors ([`api`]),
//! its `quire.v1.Log` gRPC face ([`grpc`]), configuration ([`config`]), key
//! files ([`keyfile`]) and Prometheus metrics ([`metrics`]). [`Server`]
//! opens a configuration's logs ([`open`]) and runs every face until a
//! shutdown future completes, then drains every log; the binary and
//! [`local::LocalServer`] are thin wrappers around it.
//!
//! In scope: RFC 9162 trees and proofs (via `quire-core`), C2SP checkpoints
//! (`tlog-checkpoint`, `signed-note`) signed with ECDSA P-256 and Ed25519,
//! TLS and mTLS, health and reflection services, witness cosignature
//! collection over gRPC and C2SP `tlog-witness` ([`witnessing`]), the
//! high-water record and start-up checks that keep the log from signing a
//! fork of itself ([`highwater`], [`startup`]), offline recovery
//! ([`import`], [`fsck`]), PostgreSQL storage and replicas ([`replica`]),
//! who may do what ([`access`]), the log lifecycle ([`lifecycle`]), the
//! admin service ([`admin`]) and log families rolling over by period
//! ([`family`]). Out of scope so far: the C2SP `tlog-tiles` HTTP face and
//! audit events with their indexes.

pub mod access;
pub mod admin;
pub mod api;
mod batch;
pub mod config;
pub mod events;
pub mod family;
pub mod follow;
pub mod formation;
pub mod fsck;
pub mod fuzz_targets;
pub mod grpc;
pub mod highwater;
mod http1;
pub mod import;
pub mod keyfile;
pub mod lifecycle;
pub mod local;
pub mod log;
mod log_options;
pub mod metrics;
pub mod migrate;
pub mod open;
pub mod pacing;
pub mod proofs;
mod repeats;
pub mod replica;
pub mod routed;
pub mod sequencer;
pub mod serve;
pub mod signing;
pub mod startup;
pub mod store;
pub mod witnessing;

pub use open::{open_log, open_logs, open_postgres_log, open_redb_log, Opened, StartError};
pub use serve::{serve, Faces, Server};
