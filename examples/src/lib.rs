//! `asynchat-examples`: real protocols built on asynchat-rs, each a sans-IO module, plus the
//! tools of the benchmarks.
//!
//! Written so far: [`echo`] (the protocol), the baselines of the driver benchmarks —
//! [`raw_echo`] (a hand-written mio echo server), [`baselines`] (tokio-util `Framed` and plain
//! smol echo servers) — and [`loadgen`]. The chat room, SMTP, HTTP and Redis-protocol
//! servers and their binaries are the subject of issue 5.
#![forbid(unsafe_code)]

pub mod baselines;
pub mod chat;
pub mod cli;
pub mod echo;
pub mod httpd;
pub mod loadgen;
pub mod raw_echo;
pub mod resp;
pub mod run;
pub mod smtpd;
pub mod tour;
