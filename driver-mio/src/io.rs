//! Moving bytes between a non-blocking stream and a `Chat`: reads straight into the framer's
//! buffer until `WouldBlock`, vectored writes from the outbox until `WouldBlock`, `EINTR` retried.

use std::io::{self, IoSlice, Write};
use std::net::Shutdown;
use std::time::Instant;

use asynchat_core::{BytesMut, Chat, Protocol};
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

/// What a read pass ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// The socket has nothing more for now.
    WouldBlock,
    /// The chat does not want input now (backpressure, paused, closed).
    NotWanted,
    /// The peer ended its side.
    Eof,
    /// The turn's budget is spent; the socket may hold more.
    Budget,
}

/// Reads until `WouldBlock`, EOF, the chat stops wanting input, or `budget` bytes have been
/// read. Returns bytes read and why it stopped; an I/O error is returned for the caller to
/// report to the chat.
///
/// With `short_read_drains`, a read that fills less than the room it was given also ends the
/// pass as `WouldBlock`: a stream socket hands over everything it holds, so it is drained, and
/// edge-triggered readiness reports whatever arrives next. That spares the `recv` that would
/// only fail with `WouldBlock` (one system call in three for request/response traffic;
/// tokio's `PollEvented` does the same). Not when the event reported the peer's end or an
/// error: no new edge would come for those, so they must be read to the end.
pub(crate) fn read_ready<P: Protocol, S: StreamIo>(
    chat: &mut Chat<P>,
    io: &mut S,
    now: Instant,
    short_read_drains: bool,
    budget: usize,
) -> io::Result<(usize, ReadEnd)> {
    let mut total = 0;
    loop {
        if total >= budget {
            return Ok((total, ReadEnd::Budget));
        }
        if !chat.interest().readable {
            return Ok((total, ReadEnd::NotWanted));
        }
        let read = chat.handle_read_with(now, |buf| {
            let room = buf.capacity() - buf.len();
            io.read_into(buf).map(|n| (n, n < room))
        });
        match read {
            None => return Ok((total, ReadEnd::NotWanted)),
            Some(Ok((0, _))) => {
                chat.handle_eof(now);
                return Ok((total, ReadEnd::Eof));
            }
            Some(Ok((n, short))) => {
                total += n;
                if short && short_read_drains {
                    return Ok((total, ReadEnd::WouldBlock));
                }
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok((total, ReadEnd::WouldBlock))
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Some(Err(e)) => return Err(e),
        }
    }
}

/// What a write pass ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteEnd {
    /// Nothing more to write now.
    Done,
    /// The socket takes no more for now.
    WouldBlock,
    /// The turn's budget is spent; output is still pending.
    Budget,
}

/// Writes until the outbox is empty, the socket would block, or `budget` bytes have been
/// written. Returns bytes written and why it stopped.
pub(crate) fn write_ready<P: Protocol, S: StreamIo>(
    chat: &mut Chat<P>,
    io: &mut S,
    budget: usize,
) -> io::Result<(usize, WriteEnd)> {
    let mut total = 0;
    loop {
        if total >= budget {
            return Ok((total, WriteEnd::Budget));
        }
        // One slice (short replies copied together) goes as a plain write, on a socket `send`:
        // the kernel's `writev` passes through the file layer (position lock check, fsnotify)
        // on every call.
        let Some(result) = chat.transmit_with(|slices| match slices {
            [one] => io.write(one),
            _ => io.write_vectored(slices),
        }) else {
            return Ok((total, WriteEnd::Done));
        };
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                total += n;
                chat.handle_written(n);
                if !chat.interest().writable {
                    // All written: asking the outbox again would only find it empty.
                    return Ok((total, WriteEnd::Done));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok((total, WriteEnd::WouldBlock))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads and discards until `WouldBlock`; `true` once the peer has closed or failed.
pub(crate) fn drain<S: StreamIo>(io: &mut S) -> bool {
    let mut scratch = BytesMut::with_capacity(16 * 1024);
    loop {
        scratch.clear();
        match io.read_into(&mut scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
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
        // Pipes have no `recv` into uninitialised memory: zero the spare capacity first.
        let start = buf.len();
        buf.resize(buf.capacity().max(start + 1), 0);
        let result = std::io::Read::read(&mut self.input, &mut buf[start..]);
        buf.truncate(start + *result.as_ref().unwrap_or(&0));
        result
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.output = None;
        Ok(())
    }

    fn connect_result(&mut self) -> io::Result<bool> {
        Ok(true)
    }
}
