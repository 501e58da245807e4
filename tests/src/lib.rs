//! `asynchat-tests`: the conformance and fault suite every driver must pass.
//!
//! **Not implemented yet**: the suite arrives with the mio driver (issue 3) and the tokio and smol
//! drivers add themselves to it (issue 4). The sans-IO core is tested in `core/` (unit tests,
//! property tests and the differential test against Python's `asynchat`).
#![forbid(unsafe_code)]

pub use asynchat_core as core;
