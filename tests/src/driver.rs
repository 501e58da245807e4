//! What the suite needs of a driver, and its implementation for each driver crate.

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use asynchat_core::{Bytes, Config, DatagramProtocol, Protocol};

/// A driver under test: it serves protocols on 127.0.0.1 from a background thread.
pub trait Driver: 'static {
    /// The driver's name, in test output.
    const NAME: &'static str;
    /// How a connection is named to the driver's cross-connection handle.
    type ConnId: Copy + Send + 'static;
    /// The driver's cross-connection handle.
    type Handle: Clone + Send + 'static;

    /// Serves on an ephemeral port; `factory` makes each connection's protocol.
    fn serve<P, F>(config: Config, factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(Self::ConnId, Self::Handle) -> P + Send + 'static;

    /// Binds a UDP endpoint on an ephemeral port.
    fn serve_udp<P: DatagramProtocol + Send + 'static>(protocol: P) -> Server;

    /// Runs `protocol` as a client of `addr` until it closes.
    fn run_client<P: Protocol + Send + 'static>(addr: SocketAddr, protocol: P) -> JoinHandle<()>;

    /// Pushes `data` to connection `id` through the handle.
    fn push(handle: &Self::Handle, id: Self::ConnId, data: Bytes);

    /// Runs `protocol` over `stream`, an already connected Unix stream socket (a stream that is
    /// not TCP), on a thread of its own until the connection closes.
    fn run_over_unix<P: Protocol + Send + 'static>(
        stream: UnixStream,
        protocol: P,
        config: Config,
    ) -> JoinHandle<()>;
}

/// Stops a server's loop.
pub struct StopFn(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for StopFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopFn")
    }
}

/// A running server: its address, and a way to stop it (on drop, too).
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<StopFn>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// A server listening at `addr`, stopped by `stop`, running on `thread`.
    pub fn new(addr: SocketAddr, stop: Box<dyn FnOnce() + Send>, thread: JoinHandle<()>) -> Self {
        Self {
            addr,
            stop: Some(StopFn(stop)),
            thread: Some(thread),
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

/// `asynchat-mio`.
#[derive(Debug)]
pub struct Mio;

impl Driver for Mio {
    const NAME: &'static str = "mio";
    type ConnId = asynchat_mio::ConnId;
    type Handle = asynchat_mio::Handle;

    fn serve<P, F>(config: Config, mut factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(Self::ConnId, Self::Handle) -> P + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut event_loop = asynchat_mio::EventLoop::with_config(config).expect("event loop");
            let bound = event_loop
                .listen(crate::LOCALHOST, move |a| factory(a.id, a.handle.clone()))
                .expect("listen");
            tx.send((bound.addr, event_loop.handle()))
                .expect("report address");
            event_loop.run().expect("run");
        });
        let (addr, handle) = rx.recv().expect("server started");
        Server::new(addr, Box::new(move || drop(handle.stop())), thread)
    }

    fn serve_udp<P: DatagramProtocol + Send + 'static>(protocol: P) -> Server {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut event_loop = asynchat_mio::EventLoop::new().expect("event loop");
            let bound = event_loop
                .bind_udp(crate::LOCALHOST, protocol)
                .expect("bind");
            tx.send((bound.addr, event_loop.handle()))
                .expect("report address");
            event_loop.run().expect("run");
        });
        let (addr, handle) = rx.recv().expect("server started");
        Server::new(addr, Box::new(move || drop(handle.stop())), thread)
    }

    fn run_client<P: Protocol + Send + 'static>(addr: SocketAddr, protocol: P) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let mut event_loop = asynchat_mio::EventLoop::new().expect("event loop");
            // A failure is reported to the protocol's `closed`, which the test inspects.
            let _ = event_loop.connect(addr, protocol);
            event_loop.run().expect("run");
        })
    }

    fn push(handle: &Self::Handle, id: Self::ConnId, data: Bytes) {
        handle.push(id, data).expect("push");
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

/// Runs `start` (which returns the address it serves and a stop action) on a runtime of its own
/// thread, until the server is stopped.
fn tokio_server<Fut>(multi_thread: bool, start: impl FnOnce() -> Fut + Send + 'static) -> Server
where
    Fut: std::future::Future<Output = (SocketAddr, Box<dyn FnOnce() + Send>)>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        tokio_runtime(multi_thread).block_on(async move {
            let (addr, stop) = start().await;
            tx.send(addr).expect("report address");
            let _ = stop_rx.await;
            stop();
        });
    });
    let addr = rx.recv().expect("server started");
    Server::new(
        addr,
        Box::new(move || {
            let _ = stop_tx.send(());
        }),
        thread,
    )
}

macro_rules! tokio_driver {
    ($ty:ty, $name:literal, $multi:literal) => {
        impl Driver for $ty {
            const NAME: &'static str = $name;
            type ConnId = asynchat_tokio::ConnId;
            type Handle = asynchat_tokio::Handle;

            fn serve<P, F>(config: Config, mut factory: F) -> Server
            where
                P: Protocol + Send + 'static,
                F: FnMut(Self::ConnId, Self::Handle) -> P + Send + 'static,
            {
                tokio_server($multi, move || async move {
                    let listener = tokio::net::TcpListener::bind(crate::LOCALHOST)
                        .await
                        .expect("bind");
                    let server = asynchat_tokio::serve(listener, config, move |a| {
                        factory(a.id, a.handle.clone())
                    })
                    .expect("serve");
                    let addr = server.addr();
                    let stop: Box<dyn FnOnce() + Send> = Box::new(move || server.shutdown());
                    (addr, stop)
                })
            }

            fn serve_udp<P: DatagramProtocol + Send + 'static>(protocol: P) -> Server {
                tokio_server($multi, move || async move {
                    let socket = tokio::net::UdpSocket::bind(crate::LOCALHOST)
                        .await
                        .expect("bind");
                    let addr = socket.local_addr().expect("address");
                    let task = tokio::spawn(asynchat_tokio::serve_udp(socket, protocol));
                    let stop: Box<dyn FnOnce() + Send> = Box::new(move || task.abort());
                    (addr, stop)
                })
            }

            fn run_client<P: Protocol + Send + 'static>(
                addr: SocketAddr,
                protocol: P,
            ) -> JoinHandle<()> {
                std::thread::spawn(move || {
                    tokio_runtime($multi).block_on(async move {
                        asynchat_tokio::connect(addr, protocol, &Config::default())
                            .await
                            .expect("valid protocol");
                    });
                })
            }

            fn push(handle: &Self::Handle, id: Self::ConnId, data: Bytes) {
                handle
                    .push(id, data)
                    .expect("the connection is open and reading");
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
                        asynchat_tokio::run(protocol, stream, &config)
                            .await
                            .expect("valid protocol");
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

/// Runs `start` in a thread of its own with `smol::block_on`, until the server is stopped.
fn smol_server<Fut>(start: impl FnOnce() -> Fut + Send + 'static) -> Server
where
    Fut: std::future::Future<Output = (SocketAddr, Box<dyn FnOnce() + Send>)>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || {
        smol::block_on(async move {
            let (addr, stop) = start().await;
            tx.send(addr).expect("report address");
            let _ = stop_rx.recv().await;
            stop();
        });
    });
    let addr = rx.recv().expect("server started");
    Server::new(
        addr,
        Box::new(move || {
            let _ = stop_tx.try_send(());
        }),
        thread,
    )
}

impl Driver for Smol {
    const NAME: &'static str = "smol";
    type ConnId = asynchat_smol::ConnId;
    type Handle = asynchat_smol::Handle;

    fn serve<P, F>(config: Config, mut factory: F) -> Server
    where
        P: Protocol + Send + 'static,
        F: FnMut(Self::ConnId, Self::Handle) -> P + Send + 'static,
    {
        smol_server(move || async move {
            let listener =
                smol::Async::<std::net::TcpListener>::bind(crate::LOCALHOST).expect("bind");
            let server =
                asynchat_smol::serve(listener, config, move |a| factory(a.id, a.handle.clone()))
                    .expect("serve");
            let addr = server.addr();
            let stop: Box<dyn FnOnce() + Send> = Box::new(move || {
                server.shutdown();
                drop(server);
            });
            (addr, stop)
        })
    }

    fn serve_udp<P: DatagramProtocol + Send + 'static>(protocol: P) -> Server {
        smol_server(move || async move {
            let socket = smol::Async::<std::net::UdpSocket>::bind(crate::LOCALHOST).expect("bind");
            let addr = socket.get_ref().local_addr().expect("address");
            let task = smol::spawn(asynchat_smol::serve_udp(socket, protocol));
            let stop: Box<dyn FnOnce() + Send> = Box::new(move || drop(task));
            (addr, stop)
        })
    }

    fn run_client<P: Protocol + Send + 'static>(addr: SocketAddr, protocol: P) -> JoinHandle<()> {
        std::thread::spawn(move || {
            smol::block_on(asynchat_smol::connect(addr, protocol, &Config::default()))
                .expect("valid protocol");
        })
    }

    fn push(handle: &Self::Handle, id: Self::ConnId, data: Bytes) {
        handle
            .push(id, data)
            .expect("the connection is open and reading");
    }

    fn run_over_unix<P: Protocol + Send + 'static>(
        stream: UnixStream,
        protocol: P,
        config: Config,
    ) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let stream = smol::Async::new(stream).expect("register");
            smol::block_on(asynchat_smol::run(protocol, stream, &config)).expect("valid protocol");
        })
    }
}
