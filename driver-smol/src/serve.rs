//! Serving, connecting, and driving any stream.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use asynchat_core::driver::{
    outside_server, run_chat, wind_down, Accepted, Connection, Handle, ServerHandle, ServerStats,
    DEFAULT_SHUTDOWN_DEADLINE,
};
use asynchat_core::{Chat, CloseReason, Config, Misuse, Protocol};
use smol::io::{AsyncRead, AsyncWrite};
use smol::{Async, Task, Timer};

use crate::conn::{Deadline, Stream, Tcp};

/// First pause after `accept` fails (out of descriptors); doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A running server: see [`serve`].
///
/// Dropping it shuts the server down gracefully, as
/// [`shutdown`](Self::shutdown)`(`[`DEFAULT_SHUTDOWN_DEADLINE`]`)` would: the accept task
/// stops accepting, lets connections flush and close, and closes what is left at the deadline,
/// on its own. [`detach`](Self::detach) lets it run instead, until a [`ServerHandle`] stops it.
#[must_use = "dropping a Server shuts it down; keep it, or call `detach` to let it run"]
pub struct Server {
    addr: SocketAddr,
    handle: Handle,
    accept: Option<Task<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("stats", &self.handle.server().stats())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle on the server: its connections, counters and shutdown, from anywhere.
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        self.handle.server()
    }

    /// What the server has counted so far.
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        self.handle.server().stats()
    }

    /// Graceful shutdown: stops accepting, lets every connection flush what is queued and
    /// close, and closes those still open after `deadline`. Returns at once; see
    /// [`wait`](Self::wait).
    pub fn shutdown(&self, deadline: Duration) {
        self.handle.shutdown(deadline);
    }

    /// Waits until the server has stopped accepting (after [`shutdown`](Self::shutdown) or a
    /// handle's) and its last connection has gone: woken by that connection, no polling.
    pub async fn wait(mut self) {
        if let Some(accept) = self.accept.take() {
            accept.await;
        }
    }

    /// Lets the server run on its own, with no `Server` left to stop it by being dropped; a
    /// [`ServerHandle`] (see [`handle`](Self::handle)) still can.
    pub fn detach(mut self) {
        if let Some(accept) = self.accept.take() {
            accept.detach();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            self.handle.shutdown(DEFAULT_SHUTDOWN_DEADLINE);
            // A smol task dropped is cancelled: detached, it winds the server down itself.
            accept.detach();
        }
    }
}

/// Accepts connections on `listener`, each running the protocol `factory` makes for it in a
/// task of its own on smol's global executor.
///
/// The factory sees each connection's [`Accepted`]: its handle and the server's. A factory
/// whose protocol cannot run (an invalid first terminator) has that connection dropped and
/// counted as refused ([`ServerStats::refused`]); a failed `accept` is counted
/// ([`ServerStats::accept_errors`]) and followed by a growing pause, so running out of file
/// descriptors does not spin.
///
/// # Security
///
/// Every connection gets the limits of `config`.
pub fn serve<P, F>(
    listener: Async<TcpListener>,
    config: Config,
    mut factory: F,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let addr = listener.get_ref().local_addr()?;
    let handle = Handle::new();
    let conns = handle.clone();
    let accept = smol::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        loop {
            let next = smol::future::or(async { Some(listener.accept().await) }, async {
                conns.stopped().await;
                None
            });
            match next.await {
                None => break,
                Some(Ok((stream, peer))) => {
                    backoff = MIN_BACKOFF;
                    let _ = stream.get_ref().set_nodelay(true);
                    let (conn, commands) = conns.register(config.high_water);
                    let id = conn.id();
                    let accepted = Accepted::new(conn, peer, conns.server());
                    let Ok(chat) = Chat::with_config(factory(&accepted), &config) else {
                        conns.refuse(id);
                        continue;
                    };
                    let conns = conns.clone();
                    let on_end = move |reason: &CloseReason| conns.unregister(id, Some(reason));
                    smol::spawn(run_chat(
                        chat,
                        Tcp::new(stream),
                        Deadline::default(),
                        commands,
                        on_end,
                    ))
                    .detach();
                }
                Some(Err(_)) => {
                    conns.counters().accept_error();
                    let stopped = smol::future::or(
                        async {
                            conns.stopped().await;
                            true
                        },
                        async {
                            Timer::after(backoff).await;
                            false
                        },
                    );
                    if stopped.await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        drop(listener);
        wind_down(&conns, |deadline| async move {
            Timer::after(deadline).await;
        })
        .await;
    });
    Ok(Server {
        addr,
        handle,
        accept: Some(accept),
    })
}

/// A client connection to `addr` running `protocol`: its
/// [`ConnHandle`](asynchat_core::driver::ConnHandle) at once, and the connection itself to await
/// or spawn (`smol::spawn(connection).detach()`), which connects, runs until the connection
/// closes, and returns why. A failed connect (refused, unreachable...) reaches the protocol's
/// `closed`, and the result, as [`CloseReason::Io`].
///
/// Fails with [`Misuse`] if the protocol's first terminator is invalid (nothing is started).
pub fn connect<P>(addr: SocketAddr, protocol: P, config: Config) -> Result<Connection, Misuse>
where
    P: Protocol + Send + 'static,
{
    let mut chat = Chat::with_config(protocol, &config)?;
    let (handle, commands) = outside_server(config.high_water);
    Ok(Connection::new(handle, async move {
        match Async::<TcpStream>::connect(addr).await {
            Ok(stream) => {
                let _ = stream.get_ref().set_nodelay(true);
                run_chat(
                    chat,
                    Tcp::new(stream),
                    Deadline::default(),
                    commands,
                    |_| (),
                )
                .await
            }
            Err(e) => {
                chat.handle_error(e);
                chat.close_reason().cloned().unwrap_or(CloseReason::Aborted)
            }
        }
    }))
}

/// Runs `protocol` over an already connected `futures-io` stream until it closes: a Unix
/// socket (`smol::Async<UnixStream>`), a TLS stream, any stream of another runtime. Returns
/// the [`Connection`] to await or spawn, with its handle; fails with [`Misuse`] if the
/// protocol's first terminator is invalid.
///
/// A graceful close ends with the stream's `poll_close`. async-io's `poll_close` on a socket,
/// TCP or Unix, only flushes: the peer then sees the end of the stream when the connection
/// ends, once it has closed its own side or after
/// [`LINGER`](asynchat_core::driver::LINGER). For TCP, [`serve`] and [`connect`] shut the
/// write side down.
pub fn run<P, S>(protocol: P, io: S, config: Config) -> Result<Connection, Misuse>
where
    P: Protocol + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let chat = Chat::with_config(protocol, &config)?;
    let (handle, commands) = outside_server(config.high_water);
    Ok(Connection::new(
        handle,
        run_chat(chat, Stream(io), Deadline::default(), commands, |_| ()),
    ))
}
