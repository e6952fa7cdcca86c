//! # quire-witness
//!
//! The witness process: durable per-log state, cosigning (C2SP
//! `tlog-witness`), gossip and split-view evidence. Not built yet: it follows
//! the log server and client. Cosignatures and evidence already exist in
//! `quire-core`.
