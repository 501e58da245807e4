//! # asynchat-smol
//!
//! Drives [`asynchat_core::Chat`] connections on smol, and over any `futures-io`
//! `AsyncRead + AsyncWrite` stream (so async-std users are served too): a protocol written
//! against `asynchat-core` runs here unchanged. One task per connection, on the same loop as
//! every async driver ([`asynchat_core::driver::poll_chat`]); deadlines on `smol::Timer`.
//!
//! ```no_run
//! use asynchat_core::{Bytes, Config, Context, Protocol, Terminator};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn first_terminator(&self) -> Terminator { "\n".into() }
//!     fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Bytes) {
//!         ctx.push(line);
//!         ctx.push("\n");
//!     }
//! }
//!
//! smol::block_on(async {
//!     let listener = smol::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 7000))?;
//!     let server = asynchat_smol::serve(listener, Config::default(), |_| Echo)?;
//!     println!("echo on {}", server.addr());
//!     server.wait().await;
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]

mod conn;
mod serve;
mod udp;

pub use asynchat_core::driver::{
    Accepted, ConnHandle, ConnId, Connection, Handle, ServerHandle, ServerStats,
};
pub use asynchat_core::driver::{PeerAddr, Server};
pub use serve::{connect, run, serve, serve_unix, serve_with};
pub use udp::serve_udp;
