//! # asynchat-tokio
//!
//! Drives [`asynchat_core::Chat`] connections on tokio: a protocol written against
//! `asynchat-core` runs here unchanged. One task per connection, over any
//! `AsyncRead + AsyncWrite + Unpin` (TCP, Unix sockets, TLS streams, `tokio::io::duplex`):
//! reads go straight into the framer's buffer, writes are vectored from the outbox, the task
//! sleeps until the chat's next deadline, and backpressure and `close_when_done` are honoured.
//! Works on the current-thread and the multi-thread runtime.
//!
//! ```no_run
//! use asynchat_core::{Bytes, Config, Context, Frame, Protocol, Terminator};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn first_terminator(&self) -> Terminator { "\n".into() }
//!     fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
//!         ctx.push(line);
//!         ctx.push("\n");
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7000").await?;
//! let server = asynchat_tokio::serve(listener, Config::default(), |_| Echo)?;
//! println!("echo on {}", server.addr());
//! server.wait().await;
//! # Ok(()) }
//! ```
//!
//! For `Framed` users, `codec::TerminatorCodec` (feature `codec`, which brings in `tokio-util`)
//! is a `tokio_util` codec on the same framer.
//!
//! ## Features
//!
//! - `codec` (off by default): the `codec` module. Without it the crate depends on `tokio`
//!   (features `rt`, `net`, `time` only: enable `rt-multi-thread` or `macros` yourself if you
//!   want them), `bytes` and `asynchat-core`.
//!
//! The task loop itself is [`asynchat_core::driver::run_chat`], shared with `asynchat-smol`;
//! this crate adapts tokio's streams, timers and sockets to it. After a graceful close the write
//! side is shut down and the peer's input drained for at most
//! [`LINGER`](asynchat_core::driver::LINGER), so unread input cannot turn the close into a reset.
// One `unsafe` block, in the read path (`conn.rs`): declaring the bytes a read wrote into a
// buffer's spare capacity initialised, instead of zeroing that capacity before every read.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "codec")]
#[cfg_attr(docsrs, doc(cfg(feature = "codec")))]
pub mod codec;
mod conn;
mod serve;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod udp;

pub use asynchat_core::driver::{
    Accepted, ConnHandle, ConnId, Connection, ServerHandle, ServerStats,
};
pub use asynchat_core::driver::{PeerAddr, Server};
pub use serve::{connect, run, serve, serve_unix, serve_with, Listener};
#[cfg(feature = "tls")]
pub use tls::{connect_tls, serve_starttls, serve_tls};
pub use udp::serve_udp;
