//! # asynchat-smol
//!
//! Drives [`asynchat_core::Chat`] connections on smol, and over any `futures-io`
//! `AsyncRead + AsyncWrite` stream (so async-std users are served too): a protocol written
//! against `asynchat-core` runs here unchanged. One task per connection, on the same loop as
//! every async driver ([`asynchat_core::driver::poll_chat`]). Built on `async-io` (sockets,
//! deadlines on its `Timer`) and `futures-lite`; the executor is yours: the `*_on` functions
//! take a [`Spawner`], and with the default `smol` feature `serve`, `serve_with` and
//! `serve_unix` use smol's global executor.
//!
//! ## Features
//!
//! - `smol` (on by default): the functions that spawn on smol's global executor, and
//!   [`Spawner`]`::smol`. Without it the crate depends on `async-io`, `futures-lite`, `bytes`
//!   and `asynchat-core` only.
//! - `tracing`: spans and events (see `asynchat-core`'s feature of the same name).
//!
//! ```no_run
//! # #[cfg(feature = "smol")] {
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
//! smol::block_on(async {
//!     let listener = smol::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 7000))?;
//!     let server = asynchat_smol::serve(listener, Config::default(), |_| Echo)?;
//!     println!("echo on {}", server.addr());
//!     server.wait().await;
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # }
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

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
pub use serve::{connect, run, serve_on, serve_unix_on, serve_with_on, Spawner};
#[cfg(feature = "smol")]
pub use serve::{serve, serve_unix, serve_with};
#[cfg(feature = "tls")]
pub use tls::{connect_tls, serve_starttls_on, serve_tls_on};
#[cfg(all(feature = "tls", feature = "smol"))]
pub use tls::{serve_starttls, serve_tls};
pub use udp::serve_udp;
