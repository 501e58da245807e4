//! Serving, connecting, and driving any stream.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use asynchat_core::driver::{
    outside_server, run_chat, wind_down, Accepted, Connection, Handle, ServerHandle, ServerStats,
    DEFAULT_SHUTDOWN_DEADLINE,
};
use asynchat_core::{Chat, CloseReason, Config, Misuse, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::conn::{Stream, Timer};

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
    accept: Option<JoinHandle<()>>,
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
            let _ = accept.await;
        }
    }

    /// Lets the server run on its own, with no `Server` left to stop it by being dropped; a
    /// [`ServerHandle`] (see [`handle`](Self::handle)) still can.
    pub fn detach(mut self) {
        self.accept = None;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.handle.shutdown(DEFAULT_SHUTDOWN_DEADLINE);
        }
    }
}

/// Accepts connections on `listener`, each running the protocol `factory` makes for it in a
/// task of its own, on the current runtime.
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
pub fn serve<P, F>(listener: TcpListener, config: Config, mut factory: F) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let addr = listener.local_addr()?;
    let handle = Handle::new();
    let conns = handle.clone();
    let accept = tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        loop {
            let accepted = tokio::select! {
                () = conns.stopped() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = MIN_BACKOFF;
                    let _ = stream.set_nodelay(true);
                    let (conn, commands) = conns.register(config.high_water);
                    let id = conn.id();
                    let accepted = Accepted::new(conn, peer, conns.server());
                    let Ok(chat) = Chat::with_config(factory(&accepted), &config) else {
                        conns.refuse(id);
                        continue;
                    };
                    let conns = conns.clone();
                    let on_end = move |reason: &CloseReason| conns.unregister(id, Some(reason));
                    tokio::spawn(run_chat(
                        chat,
                        Stream(stream),
                        Timer::default(),
                        commands,
                        on_end,
                    ));
                }
                Err(_) => {
                    conns.counters().accept_error();
                    tokio::select! {
                        () = conns.stopped() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        drop(listener);
        wind_down(&conns, tokio::time::sleep).await;
    });
    Ok(Server {
        addr,
        handle,
        accept: Some(accept),
    })
}

/// A client connection to `addr` running `protocol`: its [`ConnHandle`](asynchat_core::driver::ConnHandle) at once, and the
/// connection itself to await or spawn (`tokio::spawn(connection)`), which connects, runs until
/// the connection closes, and returns why. A failed connect (refused, unreachable...) reaches
/// the protocol's `closed`, and the result, as [`CloseReason::Io`].
///
/// Fails with [`Misuse`] if the protocol's first terminator is invalid (nothing is started).
pub fn connect<P>(addr: SocketAddr, protocol: P, config: Config) -> Result<Connection, Misuse>
where
    P: Protocol + Send + 'static,
{
    let mut chat = Chat::with_config(protocol, &config)?;
    let (handle, commands) = outside_server(config.high_water);
    Ok(Connection::new(handle, async move {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                run_chat(chat, Stream(stream), Timer::default(), commands, |_| ()).await
            }
            Err(e) => {
                chat.handle_error(e);
                chat.close_reason().cloned().unwrap_or(CloseReason::Aborted)
            }
        }
    }))
}

/// Runs `protocol` over an already connected stream — TCP, a Unix socket, a TLS stream,
/// `tokio::io::duplex` — until it closes: the [`Connection`] to await or spawn, with its
/// handle. Fails with [`Misuse`] if the protocol's first terminator is invalid.
pub fn run<P, S>(protocol: P, io: S, config: Config) -> Result<Connection, Misuse>
where
    P: Protocol + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let chat = Chat::with_config(protocol, &config)?;
    let (handle, commands) = outside_server(config.high_water);
    Ok(Connection::new(
        handle,
        run_chat(chat, Stream(io), Timer::default(), commands, |_| ()),
    ))
}
