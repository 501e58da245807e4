//! Serving, connecting, and driving any stream.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::Duration;

use async_io::{Async, Timer};
use asynchat_core::driver::{
    accept_loop, outside_server, run_chat, run_chat_after, Accepted, Connection, Handle, PeerAddr,
    PollAccept, PollStream, Runtime, Server, Task,
};
use asynchat_core::{Chat, Config, Misuse, Protocol};
use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::conn::{Deadline, Socket, Stream, Tcp};

/// Where a server's tasks run: any executor that can run a `Send` future to its end on its
/// own (detached), such as smol's, async-executor's, async-std's or a thread pool of yours.
#[derive(Clone)]
pub struct Spawner(Arc<dyn Fn(Task) + Send + Sync>);

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spawner")
    }
}

impl Spawner {
    /// A spawner that hands each task to `spawn`, which must run it to its end, detached.
    pub fn new(spawn: impl Fn(Task) + Send + Sync + 'static) -> Self {
        Self(Arc::new(spawn))
    }

    /// smol's global executor.
    #[cfg(feature = "smol")]
    #[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
    #[must_use]
    pub fn smol() -> Self {
        Self::new(|task| smol::spawn(task).detach())
    }

    fn spawn(&self, task: Task) {
        (self.0)(task);
    }
}

/// What serving needs of the futures-io world: its streams, async-io's timers, a spawner and
/// sleep; `accept` turns an accepted connection into the stream a protocol runs over.
struct FuturesIo<A, C, S> {
    accept: A,
    spawner: Spawner,
    types: std::marker::PhantomData<fn(C) -> S>,
}

impl<A, C, S, Fut> Runtime for FuturesIo<A, C, S>
where
    A: FnMut(C) -> Fut + Send + 'static,
    C: Send + 'static,
    S: PollStream + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    type Stream = S;
    type Conn = C;
    type Accepting = Fut;
    type Timer = Deadline;
    type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn accepting(&mut self, conn: C) -> Fut {
        (self.accept)(conn)
    }
    fn timer(&mut self) -> Deadline {
        Deadline::default()
    }
    fn spawn(&mut self, task: Task) {
        self.spawner.spawn(task);
    }
    fn sleep(&mut self, duration: Duration) -> Self::Sleep {
        Box::pin(async move {
            Timer::after(duration).await;
        })
    }
}

/// An `Async` listener as the core's accept loop polls it: accept until it would block, then
/// wait for readiness.
struct Listening<L>(Async<L>);

/// Accepts on `listener` until it would block, then waits for readiness; `accept` is the
/// listener's own non-blocking accept, naming the peer.
fn poll_accept_on<L, S: std::os::fd::AsFd>(
    listener: &Async<L>,
    cx: &mut TaskContext<'_>,
    accept: impl Fn(&L) -> io::Result<(S, PeerAddr)>,
) -> Poll<io::Result<(Async<S>, PeerAddr)>> {
    loop {
        match accept(listener.get_ref()) {
            Ok((stream, peer)) => return Poll::Ready(Async::new(stream).map(|s| (s, peer))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready!(listener.poll_readable(cx))?;
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

impl PollAccept for Listening<TcpListener> {
    type Conn = Async<TcpStream>;
    fn poll_accept(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<io::Result<(Async<TcpStream>, PeerAddr)>> {
        poll_accept_on(&self.0, cx, |l| {
            l.accept().map(|(s, peer)| (s, PeerAddr::Tcp(peer)))
        })
    }
}

impl PollAccept for Listening<UnixListener> {
    type Conn = Async<UnixStream>;
    fn poll_accept(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<io::Result<(Async<UnixStream>, PeerAddr)>> {
        poll_accept_on(&self.0, cx, |l| {
            l.accept().map(|(s, peer)| {
                let path = peer.as_pathname().map(std::path::Path::to_path_buf);
                (s, PeerAddr::Unix(path))
            })
        })
    }
}

fn start<L, P, F, S, Fut>(
    spawner: &Spawner,
    listening: Listening<L>,
    config: Config,
    factory: F,
    accept: impl FnMut(Async<L::Stream>) -> Fut + Send + 'static,
    handle: &Handle,
) where
    L: Accepts + Send + Sync + 'static,
    Listening<L>: PollAccept<Conn = Async<L::Stream>> + Send + 'static,
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
    S: PollStream + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    spawner.spawn(Box::pin(accept_loop(
        listening,
        config,
        factory,
        handle.clone(),
        FuturesIo {
            accept,
            spawner: spawner.clone(),
            types: std::marker::PhantomData,
        },
    )));
}

/// The std listeners the futures-io driver accepts on, and the streams they give.
trait Accepts {
    type Stream: Send + 'static;
}
impl Accepts for TcpListener {
    type Stream = TcpStream;
}
impl Accepts for UnixListener {
    type Stream = UnixStream;
}

/// Accepts connections on `listener`, each running the protocol `factory` makes for it in a
/// task of its own on smol's global executor: [`serve_on`] with [`Spawner::smol`].
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub fn serve<P, F>(listener: Async<TcpListener>, config: Config, factory: F) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    serve_on(&Spawner::smol(), listener, config, factory)
}

/// [`serve_with_on`] on smol's global executor.
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub fn serve_with<P, F, S, Fut>(
    listener: Async<TcpListener>,
    config: Config,
    factory: F,
    accept: impl FnMut(Async<TcpStream>) -> Fut + Send + 'static,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    serve_with_on(&Spawner::smol(), listener, config, factory, accept)
}

/// [`serve_unix_on`] on smol's global executor.
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub fn serve_unix<P, F>(
    listener: Async<UnixListener>,
    config: Config,
    factory: F,
) -> io::Result<Server<Option<std::path::PathBuf>>>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    serve_unix_on(&Spawner::smol(), listener, config, factory)
}

/// Accepts connections on `listener`, each running the protocol `factory` makes for it in a
/// task of its own, spawned by `spawner`. See [`Server`] for its lifetime.
///
/// The factory sees each connection's [`Accepted`]: its handle and the server's. A factory
/// whose protocol cannot run (an invalid first terminator) has that connection dropped and
/// counted as refused ([`ServerStats::refused`](asynchat_core::driver::ServerStats::refused));
/// a failed `accept` is counted and followed by a growing pause
/// ([`MIN_ACCEPT_BACKOFF`](asynchat_core::driver::MIN_ACCEPT_BACKOFF)), so running out of file
/// descriptors does not spin.
///
/// # Security
///
/// Every connection gets the limits of `config`.
pub fn serve_on<P, F>(
    spawner: &Spawner,
    listener: Async<TcpListener>,
    config: Config,
    factory: F,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let addr = listener.get_ref().local_addr()?;
    let handle = Handle::new();
    let accept = |stream: Async<TcpStream>| {
        let _ = stream.get_ref().set_nodelay(true);
        std::future::ready(Ok(Tcp::new(stream)))
    };
    start(
        spawner,
        Listening(listener),
        config,
        factory,
        accept,
        &handle,
    );
    Ok(Server::new(addr, handle))
}

/// [`serve_on`] with an acceptor of your own: `accept` turns each accepted TCP connection into
/// the `futures-io` stream the protocol runs over, in that connection's task (a TLS handshake,
/// a PROXY-protocol header). A failed `accept` closes that connection only, counted as an I/O
/// close.
pub fn serve_with_on<P, F, S, Fut>(
    spawner: &Spawner,
    listener: Async<TcpListener>,
    config: Config,
    factory: F,
    mut accept: impl FnMut(Async<TcpStream>) -> Fut + Send + 'static,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    serve_tcp_polled(spawner, listener, config, factory, move |stream| {
        let accepting = accept(stream);
        async move { accepting.await.map(Stream) }
    })
}

/// Serves TCP with an acceptor that yields the stream as the core polls it (a futures-io
/// stream adapted, TLS over the socket, a socket that may switch to TLS), `TCP_NODELAY` set on
/// each accepted connection first.
pub(crate) fn serve_tcp_polled<P, F, S, Fut>(
    spawner: &Spawner,
    listener: Async<TcpListener>,
    config: Config,
    factory: F,
    mut accept: impl FnMut(Async<TcpStream>) -> Fut + Send + 'static,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
    S: PollStream + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    let addr = listener.get_ref().local_addr()?;
    let handle = Handle::new();
    let accept = move |stream: Async<TcpStream>| {
        let _ = stream.get_ref().set_nodelay(true);
        accept(stream)
    };
    start(
        spawner,
        Listening(listener),
        config,
        factory,
        accept,
        &handle,
    );
    Ok(Server::new(addr, handle))
}

/// Serves on a Unix-domain socket: [`serve_on`] for `Async<UnixListener>`.
pub fn serve_unix_on<P, F>(
    spawner: &Spawner,
    listener: Async<UnixListener>,
    config: Config,
    factory: F,
) -> io::Result<Server<Option<std::path::PathBuf>>>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let addr = listener.get_ref().local_addr()?;
    let addr = addr.as_pathname().map(std::path::Path::to_path_buf);
    let handle = Handle::new();
    start(
        spawner,
        Listening(listener),
        config,
        factory,
        |stream: Async<UnixStream>| std::future::ready(Ok(Socket::new(stream))),
        &handle,
    );
    Ok(Server::new(addr, handle))
}

/// A client connection to `addr` running `protocol`: its
/// [`ConnHandle`](asynchat_core::driver::ConnHandle) at once, and the connection itself to await
/// or spawn (`smol::spawn(connection).detach()`), which connects, runs until the connection
/// closes, and returns why. A failed connect (refused, unreachable...) reaches the protocol's
/// `closed`, and the result, as [`CloseReason::Io`](asynchat_core::CloseReason::Io).
///
/// Fails with [`Misuse`] if the protocol's first terminator is invalid (nothing is started).
pub fn connect<P>(addr: SocketAddr, protocol: P, config: Config) -> Result<Connection, Misuse>
where
    P: Protocol + Send + 'static,
{
    let chat = Chat::with_config(protocol, &config)?;
    let (handle, commands) = outside_server(config.high_water);
    let stream = tcp_connect(addr);
    Ok(Connection::new(
        handle,
        run_chat_after(chat, stream, Deadline::default(), commands, |_| ()),
    ))
}

/// Connects to `addr` (traced), with `TCP_NODELAY`: the stream a client's chat runs over, in
/// plaintext or under TLS.
pub(crate) async fn tcp_connect(addr: SocketAddr) -> io::Result<Tcp> {
    let connected = Async::<TcpStream>::connect(addr).await;
    asynchat_core::driver::client::connected(&addr, connected.as_ref().map(|_| ()));
    let stream = connected?;
    let _ = stream.get_ref().set_nodelay(true);
    Ok(Tcp::new(stream))
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
