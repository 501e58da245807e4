//! A `futures-io` stream, `smol::Timer` and the clock adapted to the core's connection task
//! ([`run_chat`](asynchat_core::driver::run_chat)).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use async_io::Timer;
use asynchat_core::driver::{read_initialized, PollStream, PollTimer};
use asynchat_core::BytesMut;
use futures_lite::io::{AsyncRead, AsyncWrite};

/// Any `futures-io` `AsyncRead + AsyncWrite` stream.
pub(crate) struct Stream<S>(pub(crate) S);

impl<S: AsyncRead + AsyncWrite + Unpin> Stream<S> {
    /// Reads as [`PollStream::poll_read_into`] does, and says whether the read was short: it
    /// returned less than it asked for, so the stream held no more.
    fn read_noting_short(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> (Poll<io::Result<usize>>, bool) {
        // futures-io reads into initialised memory only, and this crate has no `unsafe`: the
        // core's per-thread scratch spares zeroing each connection's reservation.
        let mut asked = 0;
        let read = read_initialized(buf, |scratch| {
            asked = scratch.len();
            Pin::new(&mut self.0).poll_read(cx, scratch)
        });
        let short = matches!(read, Poll::Ready(Ok(n)) if n < asked);
        (read, short)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> PollStream for Stream<S> {
    fn poll_read_into(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        self.read_noting_short(cx, buf).0
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // One slice (short replies copied together) goes as a plain write: on a socket that is
        // `send`, which skips the file layer the kernel's `writev` passes through.
        match bufs {
            [one] => Pin::new(&mut self.0).poll_write(cx, one),
            _ => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_shutdown(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// The clock, and a `smol::Timer` with the instant it is set for.
pub(crate) struct Deadline {
    timer: Timer,
    at: Option<Instant>,
}

impl Default for Deadline {
    fn default() -> Self {
        Self {
            timer: Timer::never(),
            at: None,
        }
    }
}

impl PollTimer for Deadline {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn poll_until(&mut self, cx: &mut TaskContext<'_>, at: Instant) -> Poll<()> {
        if self.at != Some(at) {
            self.timer.set_at(at);
            self.at = Some(at);
        }
        Pin::new(&mut self.timer).poll(cx).map(|_| ())
    }
}

/// A socket whose write side can be shut down on its own: TCP, or a Unix-domain stream.
pub(crate) trait HalfClose {
    fn shutdown_write(&self) -> io::Result<()>;
}

impl HalfClose for std::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl HalfClose for std::os::unix::net::UnixStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// A TCP or Unix-domain socket: as [`Stream`], but a graceful close really shuts the write side
/// down (FIN). (async-io's `poll_close` only flushes, so the peer would see the end of the
/// stream only when the socket is finally dropped.)
pub(crate) struct Socket<T> {
    stream: Stream<async_io::Async<T>>,
    /// The last read returned less than it asked for: the socket held no more.
    drained: bool,
}

/// A TCP connection's stream.
pub(crate) type Tcp = Socket<std::net::TcpStream>;

impl<T> Socket<T> {
    pub(crate) fn new(socket: async_io::Async<T>) -> Self {
        Self {
            stream: Stream(socket),
            drained: false,
        }
    }
}

impl<T> PollStream for Socket<T>
where
    T: HalfClose + std::io::Read + std::io::Write + std::os::fd::AsFd,
    async_io::Async<T>: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read_into(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let (read, short) = self.stream.read_noting_short(cx, buf);
        self.drained = short;
        read
    }

    /// async-io reads until `WouldBlock` and then asks for readiness: two failed `recv` calls
    /// per wake-up (the first readiness check answers for the event that woke the task). After
    /// a short read the socket is known to be empty, so only readiness is asked for.
    fn poll_read_ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Poll<io::Result<()>>> {
        if !std::mem::take(&mut self.drained) {
            return None;
        }
        let socket = &self.stream.0;
        // The first answer can be the readiness that woke this task, which the read consumed.
        match socket.poll_readable(cx) {
            Poll::Ready(Ok(())) => Some(socket.poll_readable(cx)),
            other => Some(other),
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_write_vectored(cx, bufs)
    }

    fn poll_shutdown(&mut self, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.0.get_ref().shutdown_write())
    }
}
