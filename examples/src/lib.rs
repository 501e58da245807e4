//! `asynchat-examples`: real protocols built on asynchat-rs, each a sans-IO module, plus the
//! tools of the benchmarks.
//!
//! Written so far: [`echo`] (the protocol), [`raw_echo`] (a hand-written mio echo server, the
//! baseline of the driver benchmark) and [`loadgen`]. The chat room, SMTP, HTTP and Redis-protocol
//! servers and their binaries are the subject of issue 5.
#![forbid(unsafe_code)]

pub mod echo;
pub mod loadgen;
pub mod raw_echo;
