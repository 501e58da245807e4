//! Running one protocol on any of the three drivers: what every example binary (and the tour)
//! shares.
//!
//! [`start`] serves a protocol factory on the chosen [`DriverKind`] from a background thread and
//! returns a [`Running`] server; [`Stopper::stop`] shuts it down gracefully (stop accepting, flush
//! what is queued, close). The factory gets a [`Link`] to the new connection, the one
//! driver-neutral handle the examples need (the chat room broadcasts through it).
//!
//! ```
//! use asynchat_examples::echo::Echo;
//! use asynchat_examples::run::{self, DriverKind, Options};
//!
//! for driver in DriverKind::ALL {
//!     let server = run::start(&Options::new(driver), |_link| Echo::default())?;
//!     let mut client = std::net::TcpStream::connect(server.addr())?;
//!     std::io::Write::write_all(&mut client, b"hi\n")?;
//!     let mut reply = [0; 3];
//!     std::io::Read::read_exact(&mut client, &mut reply)?;
//!     assert_eq!(&reply, b"hi\n");
//!     server.stopper().stop();
//!     server.wait()?;
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;

use asynchat_core::driver::{ConnHandle, PeerAddr, DEFAULT_SHUTDOWN_DEADLINE};
use asynchat_core::{CloseReason, Config, Context, Frame, Protocol, Terminator, Timer};

/// The event loop a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum DriverKind {
    /// `asynchat-mio`: one event loop per thread (one thread: asyncore's shape), several
    /// sharing the port with `SO_REUSEPORT` (`MultiLoop`).
    Mio,
    /// `asynchat-tokio` on tokio's multi-thread runtime, with as many workers as threads.
    Tokio,
    /// `asynchat-smol` on an executor run by as many threads.
    Smol,
}

impl DriverKind {
    /// Every driver, in the order the tour prints them.
    pub const ALL: [Self; 3] = [Self::Mio, Self::Tokio, Self::Smol];

    /// The name `--driver` takes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Mio => "mio",
            Self::Tokio => "tokio",
            Self::Smol => "smol",
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to serve: driver, address, per-connection limits, logging.
#[derive(Debug, Clone)]
pub struct Options {
    /// The driver.
    pub driver: DriverKind,
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Every connection's limits and timeouts.
    pub config: Config,
    /// Log one line per connection event to stderr.
    pub verbose: bool,
    /// Serve over TLS with this configuration: from the first byte, or with `starttls` when
    /// the protocol switches in band.
    pub tls: Option<Arc<asynchat_core::tls::rustls::ServerConfig>>,
    /// With `tls`: connections start in plaintext and switch when their protocol asks
    /// (STARTTLS), instead of a handshake first.
    pub starttls: bool,
    /// Threads serving connections (at least 1): event loops on mio, runtime workers on tokio,
    /// executor threads on smol.
    pub threads: usize,
}

impl Options {
    /// `driver` on an ephemeral port of 127.0.0.1, default config, quiet.
    #[must_use]
    pub fn new(driver: DriverKind) -> Self {
        Self {
            driver,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            config: Config::default(),
            verbose: false,
            tls: None,
            starttls: false,
            threads: 1,
        }
    }
}

/// A new connection, whatever the driver: its peer and the handle every driver hands out.
#[derive(Debug, Clone)]
pub struct Link {
    peer: PeerAddr,
    conn: ConnHandle,
}

impl Link {
    /// The peer's address.
    #[must_use]
    pub fn peer(&self) -> PeerAddr {
        self.peer.clone()
    }

    /// The connection's handle: push to it or close it from any thread.
    #[must_use]
    pub fn conn(&self) -> &ConnHandle {
        &self.conn
    }

    /// The connection's handle, to keep (a chat room's member list).
    #[must_use]
    pub fn into_conn(self) -> ConnHandle {
        self.conn
    }
}

/// Shuts a [`Running`] server down; cloneable, callable from any thread (a Ctrl-C handler).
#[derive(Clone)]
pub struct Stopper(Arc<dyn Fn() + Send + Sync>);

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stopper")
    }
}

impl Stopper {
    /// Graceful shutdown: stop accepting, flush and close every connection. Idempotent.
    pub fn stop(&self) {
        (self.0)();
    }
}

/// A server running on a thread of its own.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    stopper: Stopper,
    thread: JoinHandle<io::Result<()>>,
}

impl Running {
    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What stops it.
    #[must_use]
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Waits until it has stopped and every connection has closed.
    ///
    /// # Errors
    ///
    /// The event loop's error, if it failed.
    pub fn wait(self) -> io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("server thread panicked")))
    }

    /// Stops it and waits for it: [`Stopper::stop`] then [`wait`](Self::wait).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn shutdown(self) -> io::Result<()> {
        self.stopper.stop();
        self.wait()
    }
}

/// Serves the protocols `factory` makes, one per connection, on `options.driver`.
///
/// Returns once the listener is bound (so a bind error is returned here, not lost in a thread).
///
/// # Errors
///
/// Binding the address or starting the runtime failed.
pub fn start<P, F>(options: &Options, mut factory: F) -> io::Result<Running>
where
    P: Protocol + Send + 'static,
    F: FnMut(Link) -> P + Send + 'static,
{
    let verbose = options.verbose;
    let config = options.config.clone();
    let listen = options.listen;
    let tls = options.tls.clone();
    let starttls = options.starttls;
    let threads = options.threads.max(1);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = match options.driver {
        DriverKind::Mio if threads > 1 => std::thread::spawn(move || {
            // Each loop makes its connections' protocols on its own thread: one factory for all.
            let factory = std::sync::Mutex::new(factory);
            let factory = move |a: &asynchat_core::driver::Accepted| {
                let mut factory = factory
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                connection(&mut *factory, a.peer.clone(), a.conn.clone(), verbose)
            };
            use asynchat_mio::MultiLoop;
            let started = match tls {
                Some(tls) if starttls => {
                    MultiLoop::start_starttls(threads, listen, &config, tls, factory)
                }
                Some(tls) => MultiLoop::start_tls(threads, listen, &config, tls, factory),
                None => MultiLoop::start(threads, listen, &config, factory),
            };
            let Some(loops) = or_report(&ready_tx, started) else {
                return Ok(());
            };
            let handles = loops.handles().to_vec();
            let stopper = Stopper(Arc::new(move || {
                for handle in &handles {
                    let _ = handle.shutdown_within(DEFAULT_SHUTDOWN_DEADLINE);
                }
            }));
            let _ = ready_tx.send(Ok((loops.addr(), stopper)));
            loops.join()
        }),
        DriverKind::Mio => std::thread::spawn(move || {
            let started = (|| {
                let mut event_loop = asynchat_mio::EventLoop::with_config(config)?;
                let factory = move |a: &asynchat_core::driver::Accepted| {
                    connection(&mut factory, a.peer.clone(), a.conn.clone(), verbose)
                };
                let bound = match tls {
                    Some(tls) if starttls => event_loop.listen_starttls(listen, tls, factory)?,
                    Some(tls) => event_loop.listen_tls(listen, tls, factory)?,
                    None => event_loop.listen(listen, factory)?,
                };
                let handle = event_loop.handle();
                let stopper = Stopper(Arc::new(move || {
                    let _ = handle.shutdown_within(DEFAULT_SHUTDOWN_DEADLINE);
                }));
                Ok((event_loop, bound.addr, stopper))
            })();
            let Some((mut event_loop, addr, stopper)) = or_report(&ready_tx, started) else {
                return Ok(());
            };
            let _ = ready_tx.send(Ok((addr, stopper)));
            event_loop.run()
        }),
        DriverKind::Tokio => std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("asynchat-tokio")
                .enable_all()
                .build();
            let Some(runtime) = or_report(&ready_tx, runtime) else {
                return Ok(());
            };
            runtime.block_on(async move {
                let served = async {
                    let listener = tokio::net::TcpListener::bind(listen).await?;
                    let factory = move |a: &asynchat_core::driver::Accepted| {
                        connection(&mut factory, a.peer.clone(), a.conn.clone(), verbose)
                    };
                    match tls {
                        Some(tls) if starttls => {
                            asynchat_tokio::serve_starttls(listener, tls, config, factory)
                        }
                        Some(tls) => asynchat_tokio::serve_tls(listener, tls, config, factory),
                        None => asynchat_tokio::serve(listener, config, factory),
                    }
                };
                let Some(server) = or_report(&ready_tx, served.await) else {
                    return Ok(());
                };
                until_stopped(server.addr(), &ready_tx).await;
                server.shutdown(DEFAULT_SHUTDOWN_DEADLINE);
                server.wait().await;
                Ok(())
            })
        }),
        DriverKind::Smol => std::thread::spawn(move || {
            let Some(executor) = or_report(&ready_tx, Executor::start(threads)) else {
                return Ok(());
            };
            let spawner = executor.spawner();
            smol::block_on(async move {
                let listener = smol::Async::<std::net::TcpListener>::bind(listen);
                let Some(listener) = or_report(&ready_tx, listener) else {
                    return Ok(());
                };
                let factory = move |a: &asynchat_core::driver::Accepted| {
                    connection(&mut factory, a.peer.clone(), a.conn.clone(), verbose)
                };
                let served = match tls {
                    Some(tls) if starttls => {
                        asynchat_smol::serve_starttls_on(&spawner, listener, tls, config, factory)
                    }
                    Some(tls) => {
                        asynchat_smol::serve_tls_on(&spawner, listener, tls, config, factory)
                    }
                    None => asynchat_smol::serve_on(&spawner, listener, config, factory),
                };
                let Some(server) = or_report(&ready_tx, served) else {
                    return Ok(());
                };
                until_stopped(server.addr(), &ready_tx).await;
                server.shutdown(DEFAULT_SHUTDOWN_DEADLINE);
                server.wait().await;
                Ok(())
            })
        }),
    };
    let (addr, stopper) = ready_rx
        .recv()
        .map_err(|_| io::Error::other("the server thread ended before it was ready"))??;
    Ok(Running {
        addr,
        stopper,
        thread,
    })
}

type Ready = std::sync::mpsc::Sender<io::Result<(SocketAddr, Stopper)>>;

/// A smol executor run by `threads` threads of its own until dropped: where the futures-io
/// driver's connection tasks run, on as many cores as asked.
struct Executor {
    executor: Arc<smol::Executor<'static>>,
    /// Closed on drop: every thread's `run` then ends.
    stop: smol::channel::Sender<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Executor {
    fn start(threads: usize) -> io::Result<Self> {
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let mut started = Self {
            executor: Arc::new(smol::Executor::new()),
            stop,
            threads: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let (executor, stopped) = (started.executor.clone(), stopped.clone());
            // A thread that cannot start is an error; those started are stopped on drop.
            let thread = std::thread::Builder::new()
                .name(format!("asynchat-smol-{i}"))
                .spawn(move || {
                    let _ = smol::block_on(executor.run(stopped.recv()));
                })?;
            started.threads.push(thread);
        }
        Ok(started)
    }

    fn spawner(&self) -> asynchat_smol::Spawner {
        let executor = self.executor.clone();
        asynchat_smol::Spawner::new(move |task| executor.spawn(task).detach())
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.stop.close();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The value of a start-up step, or `None` once its error is sent to [`start`]'s caller.
fn or_report<T>(ready: &Ready, step: io::Result<T>) -> Option<T> {
    step.map_err(|e| drop(ready.send(Err(e)))).ok()
}

/// Reports an async server ready at `addr`, then waits, on any runtime, until its stopper is
/// called (the stopper closes a channel).
async fn until_stopped(addr: SocketAddr, ready: &Ready) {
    let (tx, rx) = smol::channel::bounded::<()>(1);
    let stop = move || {
        tx.close();
    };
    let _ = ready.send(Ok((addr, Stopper(Arc::new(stop)))));
    let _ = rx.recv().await;
}

/// A new connection's protocol, from the user's factory, with its event log.
fn connection<P, F>(factory: &mut F, peer: PeerAddr, conn: ConnHandle, verbose: bool) -> Logged<P>
where
    F: FnMut(Link) -> P,
{
    let name = peer.to_string();
    Logged::new(factory(Link { peer, conn }), name, verbose)
}

/// Logs a connection's events to stderr when verbose; otherwise only forwards them.
#[derive(Debug)]
struct Logged<P> {
    inner: P,
    peer: String,
    verbose: bool,
}

impl<P> Logged<P> {
    fn new(inner: P, peer: String, verbose: bool) -> Self {
        Self {
            inner,
            peer,
            verbose,
        }
    }

    fn log(&self, event: fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("[{}] {}", self.peer, event);
        }
    }
}

impl<P: Protocol> Protocol for Logged<P> {
    fn first_terminator(&self) -> Terminator {
        self.inner.first_terminator()
    }

    fn connected(&mut self, ctx: &mut Context<'_>) {
        self.log(format_args!("connected"));
        self.inner.connected(ctx);
    }

    fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
        self.inner.collect_incoming_data(ctx, data);
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        self.inner.found_terminator(ctx, frame);
    }

    fn peer_closed(&mut self, ctx: &mut Context<'_>, unterminated: u64) {
        self.log(format_args!(
            "peer closed its side ({unterminated} bytes unterminated)"
        ));
        self.inner.peer_closed(ctx, unterminated);
    }

    fn frame_too_long(&mut self, ctx: &mut Context<'_>, limit: usize) {
        self.log(format_args!("frame over the limit of {limit} bytes"));
        self.inner.frame_too_long(ctx, limit);
    }

    fn timeout(&mut self, ctx: &mut Context<'_>, timer: Timer) {
        self.log(format_args!("timer {timer:?}"));
        self.inner.timeout(ctx, timer);
    }

    fn tls_started(&mut self, ctx: &mut Context<'_>) {
        self.log(format_args!("TLS started"));
        self.inner.tls_started(ctx);
    }

    fn closed(&mut self, reason: &CloseReason) {
        self.log(format_args!("closed: {reason}"));
        self.inner.closed(reason);
    }
}

/// Runs one protocol over stdin/stdout (asyncore's `file_dispatcher`) on `driver`, until it
/// closes or stdin ends.
///
/// # Errors
///
/// Setting up stdin/stdout or the event loop failed, or the protocol's first terminator is
/// invalid.
pub fn run_stdio<P: Protocol + Send + 'static>(
    driver: DriverKind,
    protocol: P,
    config: &Config,
) -> io::Result<()> {
    let invalid = |e: asynchat_core::Misuse| io::Error::new(io::ErrorKind::InvalidInput, e);
    match driver {
        DriverKind::Mio => {
            let mut event_loop = asynchat_mio::EventLoop::with_config(config.clone())?;
            event_loop.attach_stdio(protocol)?;
            event_loop.run()
        }
        DriverKind::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let stdio = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
                asynchat_tokio::run(protocol, stdio, config.clone())
                    .map_err(invalid)?
                    .await;
                Ok(())
            }),
        DriverKind::Smol => smol::block_on(async {
            let stdio = Duplex {
                read: smol::Unblock::new(io::stdin()),
                write: smol::Unblock::new(io::stdout()),
            };
            asynchat_smol::run(protocol, stdio, config.clone())
                .map_err(invalid)?
                .await;
            Ok(())
        }),
    }
}

/// A reader and a writer as one `futures-io` stream.
#[derive(Debug)]
struct Duplex<R, W> {
    read: R,
    write: W,
}

impl<R: futures::AsyncRead + Unpin, W: Unpin> futures::AsyncRead for Duplex<R, W> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl<R: Unpin, W: futures::AsyncWrite + Unpin> futures::AsyncWrite for Duplex<R, W> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().write).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().write).poll_flush(cx)
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().write).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::Echo;

    #[test]
    fn a_bind_error_is_returned_by_start_on_every_driver() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for driver in DriverKind::ALL {
            let options = Options {
                listen: taken.local_addr().unwrap(),
                ..Options::new(driver)
            };
            let err = start(&options, |_| Echo::default()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{driver}: {err}");
        }
    }
}
