//! # quire-server
//!
//! The log: durable storage (redb by default, behind a trait), the batching
//! sequencer, the checkpoint signer and the gRPC services. Not built yet: it
//! is the next capability on the roadmap (see the README).
