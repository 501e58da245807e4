//! # asynchat-core
//!
//! The sans-IO core of asynchat-rs: Python's `asynchat` idea — a protocol is two callbacks,
//! `collect_incoming_data` and `found_terminator`, over a stream framed by a terminator that can
//! change at any moment — rebuilt without I/O, without a clock, in linear time and without
//! copies. The drivers (`asynchat-mio`, `asynchat-tokio`, `asynchat-smol`) move bytes and time
//! between a socket and a [`Chat`]; tests drive one with the [`testing`] harness and no socket.
//!
//! ## Map
//!
//! | module | Python original | what it owns |
//! |---|---|---|
//! | [`terminator`] | `set_terminator(bytes / int / None)` | [`Terminator`]: `Delimiter`, `Count`, `Eof` |
//! | [`framer`] | `handle_read` + `find_prefix_at_end` | [`Framer`]: incremental detection, events or whole frames, limits |
//! | [`producer`] | `simple_producer`, Medusa's producers | [`Producer`](producer::Producer) and stock producers |
//! | [`outbox`] | `producer_fifo`, `initiate_send` | [`Outbox`]: vectored output, water marks, hard limit |
//! | [`chat`] | `async_chat` | [`Protocol`], [`Context`], [`Chat`]: the connection state machine |
//! | [`datagram`] | a UDP `dispatcher` | [`DatagramProtocol`], [`DatagramChat`] |
//! | [`driver`] | — | [`poll_chat`](driver::poll_chat): the task loop of every async driver |
//! | [`backlog`] | — | [`Backlog`](backlog::Backlog): pushes from other connections bounded by the receiver's high water mark |
//! | [`testing`] | — | [`Harness`](testing::Harness), [`Replay`](testing::Replay) |
//! | [`error`] | — | [`Error`]: [`PeerError`] (bad input) vs [`Misuse`] (API misuse) vs limits |
//! | [`manual`] | — | no code: the design and its reasons (sans-IO boundary, differences from Python, performance, limits, drivers) |
//!
//! ## A protocol
//!
//! ```
//! use asynchat_core::testing::Harness;
//! use asynchat_core::{Bytes, Context, Frame, Protocol, Terminator};
//!
//! /// "SUM n\n" followed by n bytes: answers with the sum of those bytes.
//! struct Summer;
//!
//! impl Protocol for Summer {
//!     fn first_terminator(&self) -> Terminator {
//!         "\n".into()
//!     }
//!
//!     fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
//!         if ctx.terminator() == Terminator::Count(0) {
//!             // The body: back to lines.
//!             let sum: u64 = frame.iter().map(|b| u64::from(*b)).sum();
//!             ctx.push(format!("{sum}\n"));
//!             ctx.set_delimiter("\n").unwrap();
//!             return;
//!         }
//!         match frame.strip_prefix(b"SUM ").and_then(|n| std::str::from_utf8(n).ok()?.parse().ok()) {
//!             Some(n) => ctx.set_count(n), // a count cannot be invalid; 0 is an empty body
//!             _ => ctx.push("ERR\n"),
//!         }
//!     }
//! }
//!
//! let mut h = Harness::new(Summer);
//! h.send(b"SUM 3\n\x01\x02\x03SUM 1\n\x09SUM 0\n");
//! assert_eq!(h.take_output(), "6\n9\n0\n");
//! ```
//!
//! ## Differences from Python, on purpose
//!
//! - Input is bounded: a delimited frame longer than `max_frame` (default 64 KiB) is a
//!   [`PeerError::FrameTooLong`]; the default collector is bounded the same way. Counted frames
//!   have their own bound, `max_counted_frame` (default 16 MiB): a count is the protocol's
//!   choice, so one over it is the protocol's [`Misuse::CountOverLimit`], not the peer's fault.
//! - A peer's half-close does not drop queued output, and the partial last frame is delivered
//!   ([`Protocol::peer_closed`] says how many bytes never got a terminator).
//! - After `close()` inside a callback no further callback runs.
//! - Backpressure: reading and delivery stop while queued output is above the high water mark.
//! - A protocol names its first terminator; an empty delimiter is a typed error.
//! - `Terminator::Eof` fires `found_terminator` at the end of the stream (Python's `None` never
//!   fires). `Count(0)` ends a frame at once (an empty body); Python's `set_terminator(0)`
//!   never fires. A count that runs down with no new terminator fires nothing more, as in
//!   Python.
//!
//! Every difference, with its reason, is in the [`manual::python`] chapter.
//!
//! ## Features
//!
//! - `tracing` (off by default): a span per connection of an async driver's server (its id and
//!   peer) and events for accepts, refused connections, connects, closes with their reasons,
//!   over-long frames and other bad input, idle and frame timeouts, backpressure on and off,
//!   accept errors with their back-off, and a server's wind-down. Each driver crate has a
//!   `tracing` feature that turns this on (and, for mio, its loop's own events). Without it
//!   the default dependencies are `bytes` and `memchr` only, and nothing is logged; the
//!   servers' counters ([`driver::ServerStats`]) see every refusal and error either way.
//!
//! ## Security
//!
//! Every limit has a finite default: see [`Config`], [`Framer`] and [`Outbox`]. No input makes
//! this crate panic; bad input is a typed error that closes only its own connection.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod backlog;
pub mod chat;
pub mod datagram;
pub mod driver;
pub mod error;
pub mod framer;
/// The manual: how the crate is designed and why, in chapters (documentation only).
pub mod manual;
pub mod outbox;
mod pool;
pub mod producer;
pub mod terminator;
pub mod testing;
mod timers;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
mod trace;

pub use bytes::{Bytes, BytesMut};

pub use chat::{
    Chat, CloseReason, Config, Context, Frame, Interest, Parts, Protocol, State, Timer,
};
pub use datagram::{Datagram, DatagramChat, DatagramContext, DatagramProtocol};
pub use error::{Error, Fault, Misuse, PeerError, TlsError};
pub use framer::{Event, Framer, OverLongPolicy, DEFAULT_MAX_COUNTED_FRAME, DEFAULT_MAX_FRAME};
pub use outbox::Outbox;
pub use terminator::Terminator;
