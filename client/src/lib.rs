//! # quire-client
//!
//! The typed and verifying gRPC clients, the offline auditor and the monitor,
//! with the `quire` CLI. Not built yet: it follows the log server. Offline
//! verification already works with `quire-core` alone.
