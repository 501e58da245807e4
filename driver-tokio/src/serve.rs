//! Serving, connecting, and driving any stream.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use asynchat_core::driver::{
    accept_loop, outside_server, run_chat, run_chat_after, Accepted, Connection, Handle, PeerAddr,
    PollAccept, PollStream, Runtime, Server, Task,
};
use asynchat_core::{Chat, Config, Misuse, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::conn::{Stream, Timer};

/// What serving needs of tokio: its timers, spawner and sleep; `accept` turns an accepted
/// connection into the stream a protocol runs over (a tokio stream adapted, or TLS over one).
struct Tokio<A, C, S> {
    accept: A,
    types: std::marker::PhantomData<fn(C) -> S>,
}

impl<A, C, S, Fut> Runtime for Tokio<A, C, S>
where
    A: FnMut(C) -> Fut + Send + 'static,
    C: Send + 'static,
    S: PollStream + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    type Stream = S;
    type Conn = C;
    type Accepting = Fut;
    type Timer = Timer;
    type Sleep = tokio::time::Sleep;

    fn accepting(&mut self, conn: C) -> Fut {
        (self.accept)(conn)
    }
    fn timer(&mut self) -> Timer {
        Timer::default()
    }
    fn spawn(&mut self, task: Task) {
        tokio::spawn(task);
    }
    fn sleep(&mut self, duration: Duration) -> tokio::time::Sleep {
        tokio::time::sleep(duration)
    }
}

/// A tokio listener as the core's accept loop polls it.
struct Listening<L>(L);

impl PollAccept for Listening<TcpListener> {
    type Conn = TcpStream;
    fn poll_accept(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<(TcpStream, PeerAddr)>> {
        self.0
            .poll_accept(cx)
            .map_ok(|(stream, peer)| (stream, PeerAddr::Tcp(peer)))
    }
}

impl PollAccept for Listening<UnixListener> {
    type Conn = UnixStream;
    fn poll_accept(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<io::Result<(UnixStream, PeerAddr)>> {
        self.0.poll_accept(cx).map_ok(|(stream, peer)| {
            let path = peer.as_pathname().map(std::path::Path::to_path_buf);
            (stream, PeerAddr::Unix(path))
        })
    }
}

/// Accepts connections on `listener`, each running the protocol `factory` makes for it in a
/// task of its own, on the current runtime. See [`Server`] for its lifetime.
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
pub fn serve<P, F>(listener: TcpListener, config: Config, factory: F) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    serve_with(listener, config, factory, |stream| {
        std::future::ready(Ok(stream))
    })
}

/// [`serve`] over a listener and an acceptor of your own: `accept` turns each accepted
/// connection into the stream the protocol runs over, in that connection's task (a TLS
/// handshake, a PROXY-protocol header). A failed `accept` closes that connection only, counted
/// as an I/O close.
pub fn serve_with<L, P, F, S, Fut>(
    listener: L,
    config: Config,
    factory: F,
    accept: impl FnMut(L::Conn) -> Fut + Send + 'static,
) -> io::Result<Server<L::Addr>>
where
    L: Listener,
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    let mut accept = accept;
    serve_polled(listener, config, factory, move |conn| {
        let accepting = accept(conn);
        async move { accepting.await.map(Stream) }
    })
}

/// [`serve_with`] for an acceptor that yields the stream as the core polls it: a tokio stream
/// adapted, or TLS over one.
pub(crate) fn serve_polled<L, P, F, S, Fut>(
    listener: L,
    config: Config,
    factory: F,
    accept: impl FnMut(L::Conn) -> Fut + Send + 'static,
) -> io::Result<Server<L::Addr>>
where
    L: Listener,
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
    S: PollStream + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let handle = Handle::new();
    let listening = listener.into_listening();
    let mut accept = accept;
    let accept = move |conn: L::Conn| {
        L::prepare(&conn);
        accept(conn)
    };
    tokio::spawn(accept_loop(
        listening,
        config,
        factory,
        handle.clone(),
        Tokio {
            accept,
            types: std::marker::PhantomData,
        },
    ));
    Ok(Server::new(addr, handle))
}

/// Serves on a Unix-domain socket: [`serve`] for `UnixListener`.
pub fn serve_unix<P, F>(
    listener: UnixListener,
    config: Config,
    factory: F,
) -> io::Result<Server<Option<std::path::PathBuf>>>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    serve_with(listener, config, factory, |stream| {
        std::future::ready(Ok(stream))
    })
}

/// A tokio listener [`serve_with`] can accept on: `TcpListener` or `UnixListener`.
pub trait Listener: sealed::Sealed + Send + 'static {
    /// What it accepts.
    type Conn: Send + 'static;
    /// Its own address, as the [`Server`] reports it.
    type Addr;
    /// Its own address.
    fn local_addr(&self) -> io::Result<Self::Addr>;
    #[doc(hidden)]
    fn into_listening(self) -> impl PollAccept<Conn = Self::Conn> + Send + 'static;
    /// Prepares an accepted connection before the acceptor sees it (TCP: `TCP_NODELAY`, since
    /// protocols write whole replies and gain nothing from Nagle's delay).
    #[doc(hidden)]
    fn prepare(conn: &Self::Conn) {
        let _ = conn;
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for tokio::net::TcpListener {}
    impl Sealed for tokio::net::UnixListener {}
}

impl Listener for TcpListener {
    type Conn = TcpStream;
    type Addr = SocketAddr;
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Self::local_addr(self)
    }
    fn into_listening(self) -> impl PollAccept<Conn = TcpStream> + Send + 'static {
        Listening(self)
    }
    fn prepare(conn: &TcpStream) {
        let _ = conn.set_nodelay(true);
    }
}

impl Listener for UnixListener {
    type Conn = UnixStream;
    type Addr = Option<std::path::PathBuf>;
    fn local_addr(&self) -> io::Result<Self::Addr> {
        let addr = Self::local_addr(self)?;
        Ok(addr.as_pathname().map(std::path::Path::to_path_buf))
    }
    fn into_listening(self) -> impl PollAccept<Conn = UnixStream> + Send + 'static {
        Listening(self)
    }
}

/// A client connection to `addr` running `protocol`: its [`ConnHandle`](asynchat_core::driver::ConnHandle) at once, and the
/// connection itself to await or spawn (`tokio::spawn(connection)`), which connects, runs until
/// the connection closes, and returns why. A failed connect (refused, unreachable...) reaches
/// the protocol's `closed`, and the result, as [`CloseReason::Io`](asynchat_core::CloseReason::Io).
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
        run_chat_after(chat, stream, Timer::default(), commands, |_| ()),
    ))
}

/// Connects to `addr` (traced), with `TCP_NODELAY`: the stream a client's chat runs over, in
/// plaintext or under TLS.
pub(crate) async fn tcp_connect(addr: SocketAddr) -> io::Result<Stream<TcpStream>> {
    let connected = TcpStream::connect(addr).await;
    asynchat_core::driver::client::connected(&addr, connected.as_ref().map(|_| ()));
    let stream = connected?;
    let _ = stream.set_nodelay(true);
    Ok(Stream(stream))
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
