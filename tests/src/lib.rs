//! # quire-tests
//!
//! End-to-end tests across real servers, witnesses and clients. They arrive
//! with those capabilities; the tests of `quire-core` live in `core/tests`.
