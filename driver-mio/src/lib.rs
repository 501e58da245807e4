//! `asynchat-mio`: drives an [`asynchat_core::Chat`] on mio.
//!
//! **Not implemented yet.** This crate holds its place in the workspace layout of `DESIGN.md`; the
//! driver itself is the subject of issue 3. Until then it only re-exports the core so that the
//! dependency graph (drivers → core) is already the final one.
#![forbid(unsafe_code)]

pub use asynchat_core as core;
