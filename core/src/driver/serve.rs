//! A server on an async runtime, written once: the accept loop (back-off, counting, the
//! factory, one task per connection), its wind-down, and the [`Server`] its caller holds. A
//! driver adapts its listener ([`PollAccept`]), its streams, its timer, its spawner and its
//! sleep; nothing else about serving is per runtime.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use crate::chat::{Chat, CloseReason, Config, Protocol};

use super::{
    wind_down, Accepted, Handle, PollStream, PollTimer, ServerHandle, ServerStats,
    DEFAULT_SHUTDOWN_DEADLINE,
};

/// First pause after `accept` fails (out of descriptors, say), on every driver; it doubles up
/// to [`MAX_ACCEPT_BACKOFF`], and a success resets it. Retrying at once would spin at 100 % CPU
/// (asyncore did).
pub const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// The longest pause between two failed `accept`s.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Where a connection's peer is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix-domain socket peer, with its path if it bound one (clients usually do not).
    Unix(Option<PathBuf>),
    /// A stream whose peer the listener cannot name.
    Unknown,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Self::Unix(None) => f.write_str("unix:(unnamed)"),
            Self::Unknown => f.write_str("(unknown peer)"),
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        Self::Tcp(addr)
    }
}

/// A listener, as an async driver's accept loop polls it (driver side).
pub trait PollAccept {
    /// What it accepts.
    type Conn;
    /// The next connection and its peer; `Pending` registers the task's waker.
    fn poll_accept(&mut self, cx: &mut TaskContext<'_>)
        -> Poll<io::Result<(Self::Conn, PeerAddr)>>;
}

/// A connection's task, as a driver's spawner takes it.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What an accept loop needs of its runtime (driver side).
pub trait Runtime: Send + 'static {
    /// The stream a connection's task drives.
    type Stream: PollStream + Send + 'static;
    /// What the listener accepts, before it becomes [`Stream`](Self::Stream).
    type Conn: Send + 'static;
    /// Turns an accepted connection into a stream, in the connection's own task: set
    /// `TCP_NODELAY`, or run a TLS handshake. A failure closes that connection only, counted
    /// as an I/O close.
    type Accepting: Future<Output = io::Result<Self::Stream>> + Send + 'static;
    /// A connection's timer.
    type Timer: PollTimer + Send + 'static;
    /// A pause of the accept loop.
    type Sleep: Future<Output = ()> + Send + 'static;

    /// Starts turning `conn` into a stream.
    fn accepting(&mut self, conn: Self::Conn) -> Self::Accepting;
    /// A timer for a new connection.
    fn timer(&mut self) -> Self::Timer;
    /// Runs `task` on the runtime, detached.
    fn spawn(&mut self, task: Task);
    /// A pause of `duration`.
    fn sleep(&mut self, duration: Duration) -> Self::Sleep;
}

/// The accept loop of an async driver's server (driver side: spawn it, detached): accepts on
/// `listener` until `handle` is told to stop, each connection running the protocol `factory`
/// makes in a task of its own; then winds the server down (see
/// [`ServerHandle::shutdown`]) and marks it finished, which wakes [`Server::wait`].
///
/// A factory whose protocol cannot start is counted as refused; a failed `accept` is counted
/// and followed by a pause of [`MIN_ACCEPT_BACKOFF`] doubling to [`MAX_ACCEPT_BACKOFF`].
pub async fn accept_loop<L, R, P, F>(
    mut listener: L,
    config: Config,
    mut factory: F,
    handle: Handle,
    mut runtime: R,
) where
    L: PollAccept<Conn = R::Conn>,
    R: Runtime,
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P,
{
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        let next = std::future::poll_fn(|cx| {
            if handle.poll_stopped(cx).is_ready() {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        match next {
            None => break,
            Some(Ok((conn, peer))) => {
                backoff = MIN_ACCEPT_BACKOFF;
                let (handle_of_conn, commands) = handle.register(config.high_water);
                let id = handle_of_conn.id();
                let accepted = Accepted::new(handle_of_conn, peer, handle.server());
                let chat = match Chat::with_config(factory(&accepted), &config) {
                    Ok(chat) => chat,
                    Err(error) => {
                        crate::trace::event!(warn, conn = %id, peer = %accepted.peer, %error,
                            "connection refused: the factory's protocol cannot start");
                        let _ = error;
                        handle.refuse(id);
                        continue;
                    }
                };
                crate::trace::event!(debug, conn = %id, peer = %accepted.peer, "accepted");
                #[cfg(feature = "tracing")]
                let span = tracing::debug_span!("conn", id = %id, peer = %accepted.peer);
                // Boxed: the acceptor's future may be `!Unpin`; the box goes once the stream is had.
                let mut accepting = Box::pin(runtime.accepting(conn));
                let timer = runtime.timer();
                let mut registered = Registered {
                    handle: handle.clone(),
                    id,
                };
                let forced = handle.clone();
                // An acceptor that stalls (a handshake the peer never finishes) must not hold a
                // shutdown past its deadline: the forced close ends it too.
                let stream = std::future::poll_fn(move |cx| {
                    if forced.poll_forced(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "closed by the shutdown deadline while accepting",
                        )));
                    }
                    let accepted = accepting.as_mut().poll(cx);
                    if let Poll::Ready(Err(e)) = &accepted {
                        crate::trace::event!(info, error = %e, "the acceptor failed");
                        let _ = e;
                    }
                    accepted
                });
                let on_end = move |reason: CloseReason| {
                    crate::trace::event!(debug, %reason, "closed");
                    registered.done(Some(&reason));
                };
                let task = super::connection(chat, stream, timer, commands, on_end);
                #[cfg(feature = "tracing")]
                let task = tracing::Instrument::instrument(task, span);
                runtime.spawn(Box::pin(task));
            }
            // A peer that gave up before its connection was accepted, or a signal: not the
            // listener's failure, nothing to wait for.
            Some(Err(error))
                if matches!(
                    error.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Some(Err(error)) => {
                crate::trace::event!(warn, %error, pause = ?backoff, "accept failed: backing off");
                let _ = error;
                handle.counters().accept_error();
                let mut pause = Box::pin(runtime.sleep(backoff));
                let stopped = std::future::poll_fn(|cx| {
                    if handle.poll_stopped(cx).is_ready() {
                        return Poll::Ready(true);
                    }
                    pause.as_mut().poll(cx).map(|()| false)
                })
                .await;
                if stopped {
                    break;
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
    drop(listener);
    crate::trace::event!(info, "stopped accepting");
    // Stopped accepting only: the open connections go on until they end, or until a shutdown
    // winds them down.
    let drain = std::future::poll_fn(|cx| {
        if handle.poll_draining(cx).is_ready() {
            return Poll::Ready(true);
        }
        handle.poll_idle(cx).map(|()| false)
    })
    .await;
    if drain {
        wind_down(&handle, |deadline| runtime.sleep(deadline)).await;
    }
    handle.finish();
}

/// A connection's place in its server: given up once, when it ends, even if its task panics or
/// is dropped (a connection that vanished without a reason is counted as aborted).
struct Registered {
    handle: Handle,
    id: super::ConnId,
}

impl Registered {
    fn done(&mut self, reason: Option<&CloseReason>) {
        self.handle.unregister(self.id, reason);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.handle.conn(self.id).is_some() {
            self.handle.unregister(self.id, None);
        }
    }
}

/// A running server of an async driver (tokio, the futures-io driver): its address, its
/// handle, its shutdown.
///
/// Dropping it shuts the server down gracefully, as
/// [`shutdown`](Self::shutdown)`(`[`DEFAULT_SHUTDOWN_DEADLINE`]`)` would: its accept task stops
/// accepting, lets connections flush and close, and closes what is left at the deadline, on its
/// own. [`detach`](Self::detach) lets it run instead, until a [`ServerHandle`] stops it.
#[must_use = "dropping a Server shuts it down; keep it, or call `detach` to let it run"]
pub struct Server<A = SocketAddr> {
    addr: A,
    handle: Handle,
    detached: bool,
}

impl<A: fmt::Debug> fmt::Debug for Server<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<A> Server<A> {
    /// The server whose accept loop runs on `handle`, listening at `addr` (driver side).
    pub fn new(addr: A, handle: Handle) -> Self {
        Self {
            addr,
            handle,
            detached: false,
        }
    }

    /// The address the server listens on.
    #[must_use]
    pub fn addr(&self) -> A
    where
        A: Clone,
    {
        self.addr.clone()
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

    /// Waits until the server has stopped accepting and its last connection has gone: after
    /// [`shutdown`](Self::shutdown) (or a handle's), once it has wound down; after
    /// [`ServerHandle::stop_accepting`], once its connections have ended by themselves. Woken
    /// by its accept task, no polling.
    pub async fn wait(self) {
        self.handle.finished().await;
    }

    /// Lets the server run on its own, with no `Server` left to stop it by being dropped; a
    /// [`ServerHandle`] (see [`handle`](Self::handle)) still can.
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl<A> Drop for Server<A> {
    fn drop(&mut self) {
        // A shutdown already asked for keeps its own deadline.
        if !self.detached && !self.handle.is_finished() && !self.handle.is_draining() {
            self.handle.shutdown(DEFAULT_SHUTDOWN_DEADLINE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_named_for_logs() {
        let tcp = PeerAddr::from(SocketAddr::from(([127, 0, 0, 1], 80)));
        assert_eq!(tcp.to_string(), "127.0.0.1:80");
        assert_eq!(
            PeerAddr::Unix(Some("/run/x.sock".into())).to_string(),
            "unix:/run/x.sock"
        );
        assert_eq!(PeerAddr::Unix(None).to_string(), "unix:(unnamed)");
    }
}
