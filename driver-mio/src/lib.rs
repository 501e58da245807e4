//! # asynchat-mio
//!
//! Python's `asyncore.loop()` reborn on mio, driving [`asynchat_core::Chat`] connections: a
//! protocol written against `asynchat-core` runs here unchanged.
//!
//! ```no_run
//! use asynchat_core::{Bytes, Context, Frame, Protocol, Terminator};
//! use asynchat_mio::EventLoop;
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
//! let mut event_loop = EventLoop::new()?;
//! let bound = event_loop.listen("127.0.0.1:7000".parse().unwrap(), |_| Echo)?;
//! println!("echo on {}", bound.addr);
//! event_loop.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! | asyncore | here |
//! |---|---|
//! | `loop()` / `loop(count=1)` | [`EventLoop::run`] / [`EventLoop::run_once`] |
//! | `dispatcher` + `listen` + `handle_accepted` | [`EventLoop::listen`] with a protocol factory |
//! | `dispatcher.connect` + `handle_connect` | [`EventLoop::connect`]; failure reaches `Protocol::closed` as a typed I/O error |
//! | a `SOCK_DGRAM` dispatcher | [`EventLoop::bind_udp`] |
//! | `dispatcher` with `readable`/`writable`/`handle_read`/`handle_write`/`handle_close` | [`Dispatcher`], [`EventLoop::add_dispatcher`] |
//! | `file_dispatcher` | [`EventLoop::attach_pipe`], [`EventLoop::attach_stdio`] |
//! | (missing: cross-thread wake-up) | [`Handle`]: push, close, shut down or stop from anywhere |
//! | (missing: several cores) | [`MultiLoop`]: N loops on N threads sharing a port (`SO_REUSEPORT`) |
//! | (missing: TLS; pyftpdlib wrapped sockets by hand) | `EventLoop::listen_tls`, `listen_starttls`, `connect_tls` (feature `tls`) |
//!
//! The read and write passes, deadlines, the turn budget, the lingering close's reads and the
//! UDP loop are the core's ([`asynchat_core::driver::poll_chat`],
//! [`poll_datagram_chat`](asynchat_core::driver::poll_datagram_chat),
//! [`poll_discard`](asynchat_core::driver::poll_discard)), shared with `asynchat-tokio` and
//! `asynchat-smol`, called here on each readiness event. What is mio's: the loop (one
//! `mio::Poll`, a timer heap, a command queue woken by `mio::Waker`), readiness remembered
//! between edge-triggered events, write interest only while output is pending, the slot book
//! behind [`ConnId`]s, accept back-off on `EMFILE`, pipes and raw [`Dispatcher`]s, and reads
//! into uninitialised memory through `recv` (the crate's one `unsafe` block).

#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod conn;
mod dispatcher;
mod event_loop;
mod handle;
mod io;
mod multi;
#[cfg(feature = "tls")]
mod tls;
mod trace;
mod udp;

pub use asynchat_core::driver::{Accepted, ConnHandle, ConnId, ServerHandle, ServerStats};
pub use dispatcher::{DispatchContext, Dispatcher};
pub use event_loop::{Bound, EventLoop};
pub use handle::Handle;
pub use multi::MultiLoop;
