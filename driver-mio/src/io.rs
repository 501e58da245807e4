//! Non-blocking sockets and the loop's clock adapted to the core's connection loop
//! ([`poll_chat`](asynchat_core::driver::poll_chat)): the read and write passes are the core's,
//! on every driver; what is mio's is readiness kept between edge-triggered events.

use std::io::{self, IoSlice, Write};
use std::net::Shutdown;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Instant;

use asynchat_core::driver::{read_initialized, PollStream, PollTimer};
use asynchat_core::BytesMut;
use mio::event::Source;
use mio::net::TcpStream;

/// What to poll a socket for: always input, output only while some is pending.
pub(crate) fn interest(write_pending: bool) -> mio::Interest {
    if write_pending {
        mio::Interest::READABLE | mio::Interest::WRITABLE
    } else {
        mio::Interest::READABLE
    }
}

/// A non-blocking byte stream the loop can drive.
pub(crate) trait StreamIo: Source + Write {
    /// Reads into the spare capacity of `buf`, appending; `Ok(0)` is end of stream.
    fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
    /// Ends the write side (FIN), after a graceful close.
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// For a connecting client: `Ok(true)` once connected, `Ok(false)` while still connecting.
    fn connect_result(&mut self) -> io::Result<bool>;
}

/// `recv` into the spare capacity of `buf`, appending: no zeroing, no copy.
fn recv_into<S: std::os::fd::AsFd>(socket: &S, buf: &mut BytesMut) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    if spare.is_empty() {
        return Err(io::Error::other("no spare capacity to read into"));
    }
    let n = socket2::SockRef::from(socket).recv(spare)?;
    let len = buf.len() + n;
    // SAFETY: `recv` initialised the first `n` bytes of the spare capacity (it returns how
    // many bytes it wrote into the buffer it was given, at most `spare.len()`), so the first
    // `len` bytes of the buffer are initialised and `len <= capacity`.
    unsafe { buf.set_len(len) };
    Ok(n)
}

impl StreamIo for TcpStream {
    fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        recv_into(&*self, buf)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn connect_result(&mut self) -> io::Result<bool> {
        // mio's documented way: a pending error means the connect failed; a peer address means
        // it succeeded; NotConnected means it is still in progress.
        if let Some(e) = self.take_error()? {
            return Err(e);
        }
        match self.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl StreamIo for mio::net::UnixStream {
    fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        recv_into(&*self, buf)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn connect_result(&mut self) -> io::Result<bool> {
        // Only accepted Unix streams are driven: they are connected.
        Ok(true)
    }
}

/// What a connection remembers of its socket's readiness between events: edge-triggered
/// readiness reports each edge once.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    /// The last read stopped at `WouldBlock`, or was short: there is nothing to read until the
    /// next readable event, so reading again would only cost a system call.
    pub(crate) read_drained: bool,
    /// The last write stopped at `WouldBlock`: no use writing until the next writable event.
    pub(crate) write_blocked: bool,
    /// An event reported the peer's end of stream (or an error). It is reported once: a pass
    /// that stops at its turn budget before reading to the end must remember it, or a later
    /// short read would pass for a drained socket and the end would never be read.
    pub(crate) hung_up: bool,
    /// The last read filled less than the room it was given.
    short: bool,
}

/// A socket as the core's connection loop ([`poll_chat`](asynchat_core::driver::poll_chat))
/// sees it: `WouldBlock` is `Pending`. No waker is kept: the loop's readiness events bring the
/// connection back. It owns the socket, so a layer that keeps state across events (TLS) can
/// sit on it.
pub(crate) struct Socket<S> {
    pub(crate) io: S,
    pub(crate) ready: Readiness,
}

impl<S> Socket<S> {
    pub(crate) fn new(io: S) -> Self {
        Self {
            io,
            ready: Readiness::default(),
        }
    }
}

impl<S: StreamIo> PollStream for Socket<S> {
    fn poll_read_into(
        &mut self,
        _: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        if self.ready.read_drained {
            return Poll::Pending;
        }
        let room = buf.capacity() - buf.len();
        match self.io.read_into(buf) {
            Ok(n) => {
                self.ready.short = n < room;
                Poll::Ready(Ok(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.ready.read_drained = true;
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// A read that filled less than its room drained the socket (a stream socket hands over
    /// everything it holds), and the next edge reports whatever arrives: that spares the
    /// `recv` that would only fail with `WouldBlock` (one system call in three for
    /// request/response traffic; tokio's `PollEvented` does the same). Not after the peer's end
    /// or an error was reported: no new edge comes for those, so they are read to the end.
    fn poll_read_ready(&mut self, _: &mut TaskContext<'_>) -> Option<Poll<io::Result<()>>> {
        if self.ready.short && !self.ready.hung_up {
            self.ready.read_drained = true;
            return Some(Poll::Pending);
        }
        None
    }

    fn poll_write_vectored(
        &mut self,
        _: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.ready.write_blocked {
            return Poll::Pending;
        }
        // One slice (short replies copied together) goes as a plain write, on a socket `send`:
        // the kernel's `writev` passes through the file layer (position lock check, fsnotify)
        // on every call.
        let written = match bufs {
            [one] => self.io.write(one),
            _ => self.io.write_vectored(bufs),
        };
        match written {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.ready.write_blocked = true;
                Poll::Pending
            }
            written => Poll::Ready(written),
        }
    }

    fn poll_shutdown(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.io.shutdown_write())
    }
}

/// What a stream connection of the loop runs over: a socket, or a layer on one (TLS). The
/// loop registers the socket underneath and keeps its readiness.
pub(crate) trait Transport: PollStream {
    type Io: StreamIo;

    /// The socket underneath; `None` only once a layer has lost it (a failed switch to TLS),
    /// which has closed the connection.
    fn socket(&mut self) -> Option<&mut Socket<Self::Io>>;

    /// Whether a handshake must finish before the protocol is told it is connected
    /// (implicit TLS).
    fn handshakes(&self) -> bool {
        false
    }

    /// Runs that handshake.
    fn poll_handshake(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl<S: StreamIo> Transport for Socket<S> {
    type Io = S;

    fn socket(&mut self) -> Option<&mut Self> {
        Some(self)
    }
}

/// A waker that does nothing, for polling the core's loop from readiness events (its own
/// `Waker::noop` is newer than this crate's minimum Rust).
pub(crate) fn no_waker() -> &'static Waker {
    struct Nobody;
    impl Wake for Nobody {
        fn wake(self: Arc<Self>) {}
    }
    static NO_WAKER: OnceLock<Waker> = OnceLock::new();
    NO_WAKER.get_or_init(|| Waker::from(Arc::new(Nobody)))
}

/// The loop's clock for one turn, as the core's connection loop sees it: a deadline is due
/// once the turn's time has reached it, once per turn (the loop's timer heap, not a waker,
/// brings a connection back for its deadlines, and fires one re-armed for "now" next turn),
/// and a connection that yields is re-driven next turn.
pub(crate) struct Turn {
    pub(crate) now: Instant,
    /// Set when the connection stopped at its turn budget with work left.
    pub(crate) yielded: bool,
    /// A deadline came due in this turn.
    pub(crate) fired: bool,
}

impl Turn {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            now,
            yielded: false,
            fired: false,
        }
    }
}

impl PollTimer for Turn {
    fn now(&self) -> Instant {
        self.now
    }

    fn poll_until(&mut self, _: &mut TaskContext<'_>, at: Instant) -> Poll<()> {
        if at <= self.now && !self.fired {
            self.fired = true;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn yield_turn(&mut self, _: &mut TaskContext<'_>) {
        self.yielded = true;
    }
}

/// A pipe pair (or stdin/stdout) as one stream: asyncore's `file_dispatcher`. Both ends are
/// registered under the connection's token.
pub(crate) struct PipePair {
    pub(crate) input: mio::unix::pipe::Receiver,
    /// `None` once the write side is shut down (closing it is how a pipe says EOF).
    pub(crate) output: Option<mio::unix::pipe::Sender>,
}

impl PipePair {
    /// Applies `f` to each open end with the interest it is polled for. Both ends stay
    /// registered whatever the connection wants: an unwanted writable edge costs one empty turn.
    fn each_end(
        &mut self,
        mut f: impl FnMut(&mut dyn Source, mio::Interest) -> io::Result<()>,
    ) -> io::Result<()> {
        f(&mut self.input, mio::Interest::READABLE)?;
        if let Some(output) = &mut self.output {
            f(output, mio::Interest::WRITABLE)?;
        }
        Ok(())
    }
}

impl Source for PipePair {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        _: mio::Interest,
    ) -> io::Result<()> {
        self.each_end(|end, interest| registry.register(end, token, interest))
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        _: mio::Interest,
    ) -> io::Result<()> {
        self.each_end(|end, interest| registry.reregister(end, token, interest))
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        let r = self.input.deregister(registry);
        if let Some(output) = &mut self.output {
            output.deregister(registry)?;
        }
        r
    }
}

impl PipePair {
    /// The write end, unless it was shut down.
    fn output(&mut self) -> io::Result<&mut mio::unix::pipe::Sender> {
        self.output
            .as_mut()
            .ok_or_else(|| io::ErrorKind::BrokenPipe.into())
    }
}

impl Write for PipePair {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output()?.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.output()?.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StreamIo for PipePair {
    fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        // Pipes have no `recv` into uninitialised memory: the core's per-thread scratch spares
        // zeroing the reservation.
        match read_initialized(buf, |scratch| {
            Poll::Ready(std::io::Read::read(&mut self.input, scratch))
        }) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.output = None;
        Ok(())
    }

    fn connect_result(&mut self) -> io::Result<bool> {
        Ok(true)
    }
}
