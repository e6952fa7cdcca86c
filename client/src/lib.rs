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
//! - [`state`] and [`verifier`]: a verifying client that keeps a trusted
//!   checkpoint per log in a state file and moves it only forward along
//!   proven consistency, returning split-view evidence on a fork.
//!
//! - [`audit`]: offline audit of checkpoint chains, entries dumps and
//!   split-view evidence.
//! - [`monitor`]: follows a log, re-deriving its tree from every entry.

pub mod audit;
pub mod bundle;
pub mod monitor;
pub mod policy;
pub mod rpc;
pub mod state;
pub mod verifier;
