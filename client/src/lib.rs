//! # quire-client
//!
//! The library applications embed to use a Quire log, and the `quire`
//! command. It trusts nothing the server says without checking it.
//!
//! - [`rpc`]: a typed client of every `quire.v1.Log` call, with deadlines,
//!   retries of reads with backoff, and TLS/mTLS for `https://` addresses;
//! - [`policy`]: what a client trusts for a log: origin, log keys and a k-of-n
//!   witness cosignature policy (C2SP `tlog-cosignature`);
//! - [`state`] and [`verifier`]: a verifying client that keeps a trusted
//!   checkpoint per log in a state file, moves it only forward along proven
//!   consistency (RFC 9162 §2.1.4), verifies inclusion proofs against it,
//!   and returns split-view evidence on a fork;
//! - [`bundle`]: proof bundles as C2SP `tlog-proof` files carrying the entry,
//!   verified offline with only public keys;
//! - [`audit`]: offline audit of checkpoint chains, entries dumps and
//!   split-view evidence;
//! - [`monitor`]: follows a log, re-deriving its tree from every entry.
//!
//! Out of scope: running witnesses (the witness service), and storing
//! entries for the application.

pub mod audit;
pub mod bundle;
pub mod events;
pub mod extend;
pub mod fuzz_targets;
pub mod import;
pub mod index_audit;
pub mod keyed;
pub mod monitor;
pub mod policy;
pub mod rpc;
pub mod search;
pub mod state;
pub mod verifier;
