//! # quire-proto
//!
//! The `.proto` files of `quire.v1` and the only conversions between protobuf
//! messages and `quire-core` types. The protocol arrives with the log server
//! capability; this crate is the place it will live.
