//! What the suite needs of a driver, and its implementation for each driver crate.
//!
//! Everything a scenario touches is the contract every driver shares: [`Accepted`],
//! [`ConnHandle`], [`ServerHandle`]. What is per driver here is only how to construct a
//! server, a client and a connection over a stream, and which thread runs it.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::pin::Pin;
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::Arc;

use asynchat_core::driver::{Accepted, ConnHandle, ServerHandle};
use asynchat_core::tls::rustls::pki_types::ServerName;
use asynchat_core::tls::rustls::{ClientConfig, ServerConfig};
use asynchat_core::{Config, DatagramProtocol, Protocol};

/// A driver under test: it serves protocols on 127.0.0.1 from a background thread.
pub trait Driver: 'static {
    /// The driver's name, in test output.
    const NAME: &'static str;

    /// Serves on an ephemeral port; `factory` makes each connection's protocol from what the
    /// driver says of it (the same [`Accepted`] on every driver).
    fn serve<P, F>(config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static;

    /// Serves on the Unix-domain socket `path` (the returned server's `addr` is unspecified).
    fn serve_unix<P, F>(path: PathBuf, config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static;

    /// Binds a UDP endpoint on an ephemeral port.
    fn serve_udp<P: DatagramProtocol + Send + 'static>(protocol: P) -> Server;

    /// Runs `protocol` as a client of `addr` on a thread of its own until it closes: the
    /// connection's handle, and the thread.
    fn run_client<P: Protocol + Send + 'static>(
        addr: SocketAddr,
        protocol: P,
    ) -> (ConnHandle, JoinHandle<()>);

    /// Runs `protocol` over `stream`, an already connected Unix stream socket (a stream that is
    /// not TCP), on a thread of its own until the connection closes.
    fn run_over_unix<P: Protocol + Send + 'static>(
        stream: UnixStream,
        protocol: P,
        config: Config,
    ) -> JoinHandle<()>;
}

/// Stops a server's thread.
pub struct StopFn(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for StopFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopFn")
    }
}

/// A running server: its address, its handle (TCP servers), and a way to stop it (on drop,
/// too).
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    handle: Option<ServerHandle>,
    stop: Option<StopFn>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn new(
        addr: SocketAddr,
        handle: Option<ServerHandle>,
        stop: Box<dyn FnOnce() + Send>,
        thread: JoinHandle<()>,
    ) -> Self {
        Self {
            addr,
            handle,
            stop: Some(StopFn(stop)),
            thread: Some(thread),
        }
    }

    /// The server's handle.
    ///
    /// # Panics
    ///
    /// For a UDP endpoint, which has none.
    #[must_use]
    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("a TCP server has a handle")
    }

    /// Waits for the server's thread to end by itself (a server shut down through its handle).
    ///
    /// # Panics
    ///
    /// If the thread panicked.
    pub fn join(mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the server's thread");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(StopFn(stop)) = self.stop.take() {
            stop();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a server's thread awaits: the server running until it has finished.
type Finished = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a test server ends when the test drops it: at once (a shutdown with no time to flush).
const TEARDOWN: Duration = Duration::ZERO;

/// The address of a server that has none (a Unix-domain socket's).
const UNSPECIFIED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// `asynchat-mio`.
#[derive(Debug)]
pub struct Mio;

impl Driver for Mio {
    const NAME: &'static str = "mio";

    fn serve<P, F>(config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static,
    {
        Self::serve_on_loop(config, true, move |event_loop| {
            event_loop
                .listen(crate::LOCALHOST, factory)
                .map(|bound| bound.addr)
        })
    }

    fn serve_unix<P, F>(path: PathBuf, config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static,
    {
        Self::serve_on_loop(config, true, move |event_loop| {
            event_loop.listen_unix(path, factory).map(|_| UNSPECIFIED)
        })
    }

    fn serve_udp<P: DatagramProtocol + Send + 'static>(protocol: P) -> Server {
        Self::serve_on_loop(Config::default(), false, move |event_loop| {
            event_loop
                .bind_udp(crate::LOCALHOST, protocol)
                .map(|bound| bound.addr)
        })
    }

    fn run_client<P: Protocol + Send + 'static>(
        addr: SocketAddr,
        protocol: P,
    ) -> (ConnHandle, JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut event_loop = asynchat_mio::EventLoop::new().expect("event loop");
            // A failure is reported to the protocol's `closed`, which the test inspects.
            let id = event_loop
                .connect(addr, protocol)
                .expect("a valid protocol");
            tx.send(event_loop.handle().conn(id))
                .expect("report handle");
            event_loop.run().expect("run");
        });
        (rx.recv().expect("client started"), thread)
    }

    /// Through [`EventLoop::attach_pipe`](asynchat_mio::EventLoop::attach_pipe), the mio driver's
    /// way in for a stream other than TCP: the socket's descriptor, duplicated, as the input
    /// and the output (a socket reads and writes as a pipe does; it only lacks the half-close,
    /// so the peer sees the end when the connection is dropped).
    fn run_over_unix<P: Protocol + Send + 'static>(
        stream: UnixStream,
        protocol: P,
        config: Config,
    ) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let input = std::os::fd::OwnedFd::from(stream.try_clone().expect("dup"));
            let output = std::os::fd::OwnedFd::from(stream);
            let mut event_loop = asynchat_mio::EventLoop::with_config(config).expect("event loop");
            event_loop
                .attach_pipe(input.into(), output.into(), protocol)
                .expect("attach");
            event_loop.run().expect("run");
        })
    }
}

/// `asynchat-tokio` on a current-thread runtime.
#[derive(Debug)]
pub struct TokioCurrentThread;

/// `asynchat-tokio` on a multi-thread runtime (2 workers).
#[derive(Debug)]
pub struct TokioMultiThread;

fn tokio_runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().expect("tokio runtime")
}

macro_rules! tokio_driver {
    ($ty:ty, $name:literal, $multi:literal) => {
        impl Driver for $ty {
            const NAME: &'static str = $name;

            fn serve<P, F>(config: Config, factory: F) -> Server
            where
                P: Protocol + Send + 'static,
                F: FnMut(&Accepted) -> P + Send + 'static,
            {
                server_thread(tokio_block_on($multi), move || async move {
                    let listener = tokio::net::TcpListener::bind(crate::LOCALHOST)
                        .await
                        .expect("bind");
                    let server = asynchat_tokio::serve(listener, config, factory).expect("serve");
                    let addr = server.addr();
                    let handle = server.handle();
                    let finished: Finished = Box::pin(server.wait());
                    (addr, Some(handle), finished)
                })
            }

            fn serve_unix<P, F>(path: PathBuf, config: Config, factory: F) -> Server
            where
                P: Protocol + Send + 'static,
                F: FnMut(&Accepted) -> P + Send + 'static,
            {
                server_thread(tokio_block_on($multi), move || async move {
                    let listener = tokio::net::UnixListener::bind(path).expect("bind");
                    let server =
                        asynchat_tokio::serve_unix(listener, config, factory).expect("serve");
                    let handle = server.handle();
                    let finished: Finished = Box::pin(server.wait());
                    (UNSPECIFIED, Some(handle), finished)
                })
            }

            fn serve_udp<P: DatagramProtocol + Send + 'static>(protocol: P) -> Server {
                server_thread(tokio_block_on($multi), move || async move {
                    let socket = tokio::net::UdpSocket::bind(crate::LOCALHOST)
                        .await
                        .expect("bind");
                    let addr = socket.local_addr().expect("address");
                    // Dropping `finished` leaves the task; the runtime's end cancels it.
                    let task = tokio::spawn(asynchat_tokio::serve_udp(socket, protocol));
                    let finished: Finished = Box::pin(async move {
                        let _ = task.await;
                    });
                    (addr, None, finished)
                })
            }

            fn run_client<P: Protocol + Send + 'static>(
                addr: SocketAddr,
                protocol: P,
            ) -> (ConnHandle, JoinHandle<()>) {
                let connection = asynchat_tokio::connect(addr, protocol, Config::default())
                    .expect("a valid protocol");
                let handle = connection.handle();
                let thread = std::thread::spawn(move || {
                    tokio_runtime($multi).block_on(async move {
                        // Spawned, not awaited in place: a `Connection` is `Send + 'static`.
                        tokio::spawn(connection).await.expect("the client's task");
                    });
                });
                (handle, thread)
            }

            fn run_over_unix<P: Protocol + Send + 'static>(
                stream: UnixStream,
                protocol: P,
                config: Config,
            ) -> JoinHandle<()> {
                std::thread::spawn(move || {
                    tokio_runtime($multi).block_on(async move {
                        stream.set_nonblocking(true).expect("non-blocking");
                        let stream = tokio::net::UnixStream::from_std(stream).expect("register");
                        asynchat_tokio::run(protocol, stream, config)
                            .expect("valid protocol")
                            .await;
                    });
                })
            }
        }
    };
}

tokio_driver!(TokioCurrentThread, "tokio (current thread)", false);
tokio_driver!(TokioMultiThread, "tokio (multi-thread)", true);

/// `asynchat-smol` on smol's global executor.
#[derive(Debug)]
pub struct Smol;

/// Runs `start` (which returns the address it serves, its handle, and the server running to
/// its end) on a thread of its own, with `block_on` (the runtime's), until the server has
/// finished or is stopped. The stop channel and the race are smol's, which run on any runtime.
fn server_thread<Fut>(
    block_on: impl FnOnce(Pin<Box<dyn Future<Output = ()>>>) + Send + 'static,
    start: impl FnOnce() -> Fut + Send + 'static,
) -> Server
where
    Fut: Future<Output = (SocketAddr, Option<ServerHandle>, Finished)> + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || {
        block_on(Box::pin(async move {
            let (addr, handle, mut finished) = start().await;
            tx.send((addr, handle.clone())).expect("report address");
            let stopped = smol::future::or(
                async {
                    (&mut finished).await;
                    false
                },
                async {
                    // A stop sender dropped without sending (`Server::join`) is not a stop.
                    if stop_rx.recv().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    true
                },
            )
            .await;
            if stopped {
                match handle {
                    Some(handle) => {
                        handle.shutdown(TEARDOWN);
                        finished.await;
                    }
                    None => drop(finished),
                }
            }
        }));
    });
    let (addr, handle) = rx.recv().expect("server started");
    Server::new(
        addr,
        handle,
        Box::new(move || {
            let _ = stop_tx.try_send(());
        }),
        thread,
    )
}

/// A tokio runtime's `block_on`, for [`server_thread`].
fn tokio_block_on(multi_thread: bool) -> impl FnOnce(Pin<Box<dyn Future<Output = ()>>>) + Send {
    move |future| tokio_runtime(multi_thread).block_on(future)
}

impl Driver for Smol {
    const NAME: &'static str = "smol";

    fn serve<P, F>(config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static,
    {
        server_thread(smol::block_on, move || async move {
            let listener =
                smol::Async::<std::net::TcpListener>::bind(crate::LOCALHOST).expect("bind");
            let server = asynchat_smol::serve(listener, config, factory).expect("serve");
            let addr = server.addr();
            let handle = server.handle();
            let finished: Finished = Box::pin(server.wait());
            (addr, Some(handle), finished)
        })
    }

    fn serve_unix<P, F>(path: PathBuf, config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static,
    {
        server_thread(smol::block_on, move || async move {
            let listener =
                smol::Async::<std::os::unix::net::UnixListener>::bind(path).expect("bind");
            let server = asynchat_smol::serve_unix(listener, config, factory).expect("serve");
            let handle = server.handle();
            let finished: Finished = Box::pin(server.wait());
            (UNSPECIFIED, Some(handle), finished)
        })
    }

    fn serve_udp<P: DatagramProtocol + Send + 'static>(protocol: P) -> Server {
        server_thread(smol::block_on, move || async move {
            let socket = smol::Async::<std::net::UdpSocket>::bind(crate::LOCALHOST).expect("bind");
            let addr = socket.get_ref().local_addr().expect("address");
            // Dropping the task (with `finished`) cancels it.
            let task = smol::spawn(asynchat_smol::serve_udp(socket, protocol));
            let finished: Finished = Box::pin(async move {
                let _ = task.await;
            });
            (addr, None, finished)
        })
    }

    fn run_client<P: Protocol + Send + 'static>(
        addr: SocketAddr,
        protocol: P,
    ) -> (ConnHandle, JoinHandle<()>) {
        let connection =
            asynchat_smol::connect(addr, protocol, Config::default()).expect("a valid protocol");
        let handle = connection.handle();
        let thread = std::thread::spawn(move || {
            smol::block_on(smol::spawn(connection));
        });
        (handle, thread)
    }

    fn run_over_unix<P: Protocol + Send + 'static>(
        stream: UnixStream,
        protocol: P,
        config: Config,
    ) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let stream = smol::Async::new(stream).expect("register");
            smol::block_on(asynchat_smol::run(protocol, stream, config).expect("valid protocol"));
        })
    }
}

/// A driver that serves and connects over TLS (the core's TLS layer, feature `rustls`).
pub trait TlsDriver: Driver {
    /// Serves over TLS on an ephemeral port.
    fn serve_tls<P, F>(tls: Arc<ServerConfig>, config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static;

    /// Serves a STARTTLS protocol on an ephemeral port: plaintext until the protocol switches.
    fn serve_starttls<P, F>(tls: Arc<ServerConfig>, config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static;

    /// Runs `protocol` as a TLS client of `addr` (the server named `name`) on a thread of its
    /// own until it closes: the connection's handle, and the thread.
    fn run_tls_client<P: Protocol + Send + 'static>(
        addr: SocketAddr,
        name: ServerName<'static>,
        tls: Arc<ClientConfig>,
        protocol: P,
    ) -> (ConnHandle, JoinHandle<()>);
}

impl Mio {
    /// A loop on a thread of its own, serving what `listen` binds on it (at the address it
    /// returns); `counted`: whether the server's counters cover it (not a UDP endpoint's).
    fn serve_on_loop(
        config: Config,
        counted: bool,
        listen: impl FnOnce(&mut asynchat_mio::EventLoop) -> std::io::Result<SocketAddr>
            + Send
            + 'static,
    ) -> Server {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut event_loop = asynchat_mio::EventLoop::with_config(config).expect("event loop");
            let addr = listen(&mut event_loop).expect("listen");
            tx.send((addr, event_loop.handle()))
                .expect("report address");
            event_loop.run().expect("run");
        });
        let (addr, handle) = rx.recv().expect("server started");
        let server = counted.then(|| handle.server());
        Server::new(
            addr,
            server,
            Box::new(move || {
                let _ = handle.stop();
            }),
            thread,
        )
    }
}

impl TlsDriver for Mio {
    fn serve_tls<P, F>(tls: Arc<ServerConfig>, config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static,
    {
        Self::serve_on_loop(config, true, move |event_loop| {
            event_loop
                .listen_tls(crate::LOCALHOST, tls, factory)
                .map(|bound| bound.addr)
        })
    }

    fn serve_starttls<P, F>(tls: Arc<ServerConfig>, config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static,
    {
        Self::serve_on_loop(config, true, move |event_loop| {
            event_loop
                .listen_starttls(crate::LOCALHOST, tls, factory)
                .map(|bound| bound.addr)
        })
    }

    fn run_tls_client<P: Protocol + Send + 'static>(
        addr: SocketAddr,
        name: ServerName<'static>,
        tls: Arc<ClientConfig>,
        protocol: P,
    ) -> (ConnHandle, JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut event_loop = asynchat_mio::EventLoop::new().expect("event loop");
            // A failure is reported to the protocol's `closed`, which the test inspects.
            let id = event_loop
                .connect_tls(addr, name, tls, protocol)
                .expect("a valid protocol");
            tx.send(event_loop.handle().conn(id))
                .expect("report handle");
            event_loop.run().expect("run");
        });
        (rx.recv().expect("client started"), thread)
    }
}

macro_rules! tokio_tls_driver {
    ($name:ident, $multi:expr) => {
        impl TlsDriver for $name {
            fn serve_tls<P, F>(tls: Arc<ServerConfig>, config: Config, factory: F) -> Server
            where
                P: Protocol + Send + 'static,
                F: FnMut(&Accepted) -> P + Send + 'static,
            {
                server_thread(tokio_block_on($multi), move || async move {
                    let listener = tokio::net::TcpListener::bind(crate::LOCALHOST)
                        .await
                        .expect("bind");
                    let server =
                        asynchat_tokio::serve_tls(listener, tls, config, factory).expect("serve");
                    let addr = server.addr();
                    let handle = server.handle();
                    let finished: Finished = Box::pin(server.wait());
                    (addr, Some(handle), finished)
                })
            }

            fn serve_starttls<P, F>(tls: Arc<ServerConfig>, config: Config, factory: F) -> Server
            where
                P: Protocol + Send + 'static,
                F: FnMut(&Accepted) -> P + Send + 'static,
            {
                server_thread(tokio_block_on($multi), move || async move {
                    let listener = tokio::net::TcpListener::bind(crate::LOCALHOST)
                        .await
                        .expect("bind");
                    let server = asynchat_tokio::serve_starttls(listener, tls, config, factory)
                        .expect("serve");
                    let addr = server.addr();
                    let handle = server.handle();
                    let finished: Finished = Box::pin(server.wait());
                    (addr, Some(handle), finished)
                })
            }

            fn run_tls_client<P: Protocol + Send + 'static>(
                addr: SocketAddr,
                name: ServerName<'static>,
                tls: Arc<ClientConfig>,
                protocol: P,
            ) -> (ConnHandle, JoinHandle<()>) {
                let connection =
                    asynchat_tokio::connect_tls(addr, name, tls, protocol, Config::default())
                        .expect("a valid protocol");
                let handle = connection.handle();
                let thread = std::thread::spawn(move || {
                    tokio_runtime($multi).block_on(async move {
                        tokio::spawn(connection).await.expect("the client's task");
                    });
                });
                (handle, thread)
            }
        }
    };
}

tokio_tls_driver!(TokioCurrentThread, false);
tokio_tls_driver!(TokioMultiThread, true);

impl TlsDriver for Smol {
    fn serve_tls<P, F>(tls: Arc<ServerConfig>, config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static,
    {
        server_thread(smol::block_on, move || async move {
            let listener =
                smol::Async::<std::net::TcpListener>::bind(crate::LOCALHOST).expect("bind");
            let server = asynchat_smol::serve_tls(listener, tls, config, factory).expect("serve");
            let addr = server.addr();
            let handle = server.handle();
            let finished: Finished = Box::pin(server.wait());
            (addr, Some(handle), finished)
        })
    }

    fn serve_starttls<P, F>(tls: Arc<ServerConfig>, config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(&Accepted) -> P + Send + 'static,
    {
        server_thread(smol::block_on, move || async move {
            let listener =
                smol::Async::<std::net::TcpListener>::bind(crate::LOCALHOST).expect("bind");
            let server =
                asynchat_smol::serve_starttls(listener, tls, config, factory).expect("serve");
            let addr = server.addr();
            let handle = server.handle();
            let finished: Finished = Box::pin(server.wait());
            (addr, Some(handle), finished)
        })
    }

    fn run_tls_client<P: Protocol + Send + 'static>(
        addr: SocketAddr,
        name: ServerName<'static>,
        tls: Arc<ClientConfig>,
        protocol: P,
    ) -> (ConnHandle, JoinHandle<()>) {
        let connection = asynchat_smol::connect_tls(addr, name, tls, protocol, Config::default())
            .expect("a valid protocol");
        let handle = connection.handle();
        let thread = std::thread::spawn(move || {
            smol::block_on(connection);
        });
        (handle, thread)
    }
}
