//! `asynchat-examples`: real protocols built on asynchat-rs.
//!
//! **Not implemented yet**: the echo, chat, SMTP, HTTP and Redis-protocol servers are the subject of
//! issue 5. Until then, the runnable demonstration of the core is
//! `cargo run -p asynchat-core --example line_protocol`.
#![forbid(unsafe_code)]

pub use asynchat_core as core;
