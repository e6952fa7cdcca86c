//! # quire-client
//!
//! The library applications embed to use a Quire log, and the `quire`
//! command. It trusts nothing the server says without checking it.
//!
//! In scope so far:
//! - [`rpc`]: a typed client of `quire.v1.Log` with deadlines, retries of
//!   reads with backoff and TLS/mTLS;
//! - [`policy`]: what a client trusts for a log: origin, log keys and a k-of-n
//!   witness cosignature policy (C2SP `tlog-cosignature`);
//! - [`bundle`]: proof bundles as C2SP `tlog-proof` files carrying the entry,
//!   verified offline with only public keys.
//!
//! Not yet: the verifying client with a persistent trusted state, offline
//! audit of checkpoint chains and entry dumps, and the monitor.

pub mod bundle;
pub mod policy;
pub mod rpc;
