//! The TLS stream: rustls between a driver's stream and the chat.

use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::driver::{read_initialized, PollStream, PollTimer};
use crate::error::TlsError;

/// Bytes read from the stream underneath at a time: one TLS record at most is 16 KiB of
/// plaintext and its overhead.
const RECORD_READ: usize = 16 * 1024 + 512;

/// Any [`PollStream`] with TLS over it: plaintext above, records below.
///
/// Made by [`accept`] or [`connect`] (which also run the handshake, with a timeout), or by
/// [`server`](Self::server) and [`client`](Self::client), whose handshake then happens as the
/// stream is read and written. A TLS failure is an I/O error of kind `InvalidData` that carries
/// a [`TlsError`]; the chat reports it as [`PeerError::Tls`](crate::PeerError::Tls).
///
/// The end of the peer's stream without a `close_notify` alert is read as the end (as
/// HTTP/1.1 and SMTP servers commonly treat it); inside a handshake it is
/// [`TlsError::TruncatedHandshake`]. [`poll_shutdown`](PollStream::poll_shutdown) sends
/// `close_notify`, then shuts the stream underneath down.
pub struct TlsStream<S> {
    io: S,
    tls: Connection,
    /// Records read from `io` that rustls has not taken yet.
    incoming: BytesMut,
    /// `io` ended (and rustls was told).
    eof: bool,
    /// The peer has sent at least one whole, valid handshake message: a parse failure after
    /// this is a broken TLS peer, not a peer that does not speak TLS at all.
    spoke_tls: bool,
    /// `close_notify` has been queued.
    closing: bool,
    /// rustls holds plaintext not read out yet (as of the last processing).
    plaintext_waiting: bool,
    /// The last `poll_read_into` read the stream underneath: only then does that stream know
    /// whether it is drained ([`poll_read_ready`](PollStream::poll_read_ready)).
    read_below: bool,
}

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.tls.is_handshaking())
            .field("alpn", &self.alpn_protocol())
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl<S> TlsStream<S> {
    /// Whether the handshake is still under way.
    #[must_use]
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// The ALPN protocol agreed on, once the handshake has got that far.
    #[must_use]
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.alpn_protocol()
    }

    /// The server name the client asked for (SNI), on the server side.
    #[must_use]
    pub fn server_name(&self) -> Option<&str> {
        match &self.tls {
            Connection::Server(server) => server.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// The rustls session: protocol version, cipher suite, peer certificates.
    #[must_use]
    pub fn session(&self) -> &Connection {
        &self.tls
    }

    /// The stream underneath.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The stream underneath, for what TLS does not cover (socket options, say); reading or
    /// writing it directly breaks the session.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }
}

impl<S: PollStream> TlsStream<S> {
    /// The server side of a TLS session over `io`; the handshake runs as it is read and
    /// written ([`poll_handshake`](Self::poll_handshake) runs it alone).
    pub fn server(io: S, config: Arc<ServerConfig>) -> io::Result<Self> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Self::new(io, tls.into()))
    }

    /// The client side of a TLS session over `io`, to the server named `name` (sent as SNI,
    /// and the name its certificate must carry).
    pub fn client(io: S, config: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<Self> {
        let tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(Self::new(io, tls.into()))
    }

    fn new(io: S, tls: Connection) -> Self {
        Self {
            io,
            tls,
            incoming: BytesMut::new(),
            eof: false,
            spoke_tls: false,
            closing: false,
            plaintext_waiting: false,
            read_below: false,
        }
    }

    /// Runs the handshake: `Ready(Ok(()))` once it is over and its last flight is written.
    pub fn poll_handshake(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        while self.tls.is_handshaking() {
            let flushed = self.flush_records(cx)?;
            if !self.tls.is_handshaking() {
                break;
            }
            if self.tls.wants_read() || flushed.is_ready() {
                if self.incoming.is_empty() {
                    match self.read_records(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                let held = self.incoming.len();
                if let Err(e) = self.feed(cx) {
                    return Poll::Ready(Err(e));
                }
                if held != 0 && self.incoming.len() == held {
                    return Poll::Ready(Err(tls_error(TlsError::Protocol(
                        "TLS input stalled during the handshake".into(),
                    ))));
                }
            } else {
                return Poll::Pending;
            }
        }
        self.flush_records(cx)
    }

    /// Writes the records rustls has ready to the stream underneath.
    fn flush_records(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut out = Below {
                io: &mut self.io,
                cx,
            };
            match self.tls.write_tls(&mut out) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// One read of records from the stream underneath into `incoming` (which must be empty).
    /// At the end of the stream rustls is told, and a handshake cut short is an error.
    fn read_records(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if self.eof {
            return Poll::Ready(Err(tls_error(TlsError::TruncatedHandshake)));
        }
        self.incoming.clear();
        self.incoming.reserve(RECORD_READ);
        match self.io.poll_read_into(cx, &mut self.incoming) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                // An empty read is how rustls learns of the end.
                let _ = self.tls.read_tls(&mut &[][..]);
                if self.tls.is_handshaking() {
                    return Poll::Ready(Err(tls_error(TlsError::TruncatedHandshake)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
        }
    }

    /// Hands rustls what `incoming` holds, as far as its buffers take it, and processes it. A
    /// TLS failure queues rustls's alert, which is sent if the stream takes it at once.
    fn feed(&mut self, cx: &mut TaskContext<'_>) -> io::Result<()> {
        while !self.incoming.is_empty() {
            let mut rest: &[u8] = &self.incoming;
            let before = rest.len();
            if let Err(e) = self.tls.read_tls(&mut rest) {
                if self.plaintext_waiting {
                    // Its buffer is full: the plaintext must be read first.
                    break;
                }
                // Full with nothing to read out: records that never make a message (a
                // handshake message declared larger than it arrives), which would spin.
                return Err(tls_error(TlsError::Protocol(e.to_string())));
            }
            let used = before - rest.len();
            self.incoming.advance(used);
            match self.tls.process_new_packets() {
                Ok(state) => self.plaintext_waiting = state.plaintext_bytes_to_read() > 0,
                Err(e) => {
                    let error = classify(&e, self.spoke_tls);
                    let _ = self.flush_records(cx);
                    return Err(tls_error(error));
                }
            }
            // A first flight answered (or the handshake over) means the peer speaks TLS.
            self.spoke_tls |= self.tls.wants_write() || !self.tls.is_handshaking();
            if used == 0 {
                break;
            }
        }
        Ok(())
    }
}

impl<S: PollStream> PollStream for TlsStream<S> {
    fn poll_read_into(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        self.read_below = false;
        loop {
            let tls = &mut self.tls;
            match read_initialized(buf, |scratch| Poll::Ready(tls.reader().read(scratch))) {
                Poll::Ready(Ok(n)) => return Poll::Ready(Ok(n)),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.plaintext_waiting = false;
                }
                // The peer's end without `close_notify`: the end all the same.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(0));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            if let Poll::Ready(Err(e)) = self.flush_records(cx) {
                return Poll::Ready(Err(e));
            }
            if self.incoming.is_empty() {
                match self.read_records(cx) {
                    Poll::Ready(Ok(())) => self.read_below = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let held = self.incoming.len();
            self.feed(cx)?;
            if held != 0 && self.incoming.len() == held {
                // rustls took nothing and has no plaintext for us: it would never move.
                return Poll::Ready(Err(tls_error(TlsError::Protocol(
                    "TLS input stalled".into(),
                ))));
            }
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Earlier records go first: backpressure comes from the stream underneath.
        match self.flush_records(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        let n = self.tls.writer().write_vectored(bufs)?;
        // Written out now if the stream takes them, else by the next write or flush.
        if let Poll::Ready(Err(e)) = self.flush_records(cx) {
            return Poll::Ready(Err(e));
        }
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // rustls's own buffer is full, a handshake still under way: drive the handshake
            // from here (the chat may not be reading), so that a waker is registered with
            // whatever it waits for.
            return match self.poll_handshake(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(self.tls.writer().write_vectored(bufs)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        Poll::Ready(Ok(n))
    }

    /// Drained when the last read went down to the stream underneath and rustls now holds no
    /// plaintext, no end of the session (a `close_notify` is read as the end) and no records
    /// waiting to be handed to it: then only that stream can bring more, and it may know
    /// without reading (a short read, async-io's `poll_readable`), which spares the read that
    /// would find nothing. A read served from what rustls held earlier says nothing of the
    /// stream underneath: the next read goes down to it.
    fn poll_read_ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Poll<io::Result<()>>> {
        if !self.read_below || self.eof || !self.incoming.is_empty() || self.tls.is_handshaking() {
            return None;
        }
        match self.tls.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {
                self.io.poll_read_ready(cx)
            }
            _ => None,
        }
    }

    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.flush_records(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            self.closing = true;
            self.tls.send_close_notify();
        }
        match self.flush_records(cx) {
            Poll::Ready(Ok(())) => self.io.poll_shutdown(cx),
            other => other,
        }
    }
}

/// The stream underneath as rustls's `write_tls` wants it: `Pending` is `WouldBlock`.
struct Below<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut TaskContext<'b>,
}

impl<S: PollStream> Write for Below<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.io.poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS failure as the I/O error the chat recognises ([`Chat::handle_error`](crate::Chat)).
pub(super) fn tls_error(error: TlsError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// What a rustls error says about the peer. `spoke_tls`: whether the peer got through a first
/// handshake message (before that, bytes that do not parse are not TLS at all).
fn classify(error: &rustls::Error, spoke_tls: bool) -> TlsError {
    use rustls::Error as E;
    match error {
        E::InvalidMessage(_) | E::PeerSentOversizedRecord | E::InappropriateMessage { .. }
            if !spoke_tls =>
        {
            TlsError::NotTls
        }
        E::AlertReceived(alert) => TlsError::Alert(format!("{alert:?}")),
        E::InvalidCertificate(_) | E::NoCertificatesPresented => {
            TlsError::BadCertificate(error.to_string())
        }
        _ => TlsError::Protocol(error.to_string()),
    }
}

/// Runs the handshake over `stream`, for at most `timeout` by `timer`'s clock:
/// [`TlsError::HandshakeTimedOut`] past it.
async fn handshake<S: PollStream, T: PollTimer>(
    mut stream: TlsStream<S>,
    mut timer: T,
    timeout: Duration,
) -> io::Result<TlsStream<S>> {
    let deadline = timer.now().checked_add(timeout);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = stream.poll_handshake(cx) {
            return Poll::Ready(done);
        }
        match deadline {
            Some(at) if timer.poll_until(cx, at).is_ready() => {
                Poll::Ready(Err(tls_error(TlsError::HandshakeTimedOut)))
            }
            _ => Poll::Pending,
        }
    })
    .await?;
    Ok(stream)
}

/// The server side of a TLS session over `io`, its handshake run within `timeout` (by
/// `timer`, the driver's clock; [`DEFAULT_HANDSHAKE_TIMEOUT`](super::DEFAULT_HANDSHAKE_TIMEOUT)
/// is a reasonable one): what a driver's acceptor hook returns.
pub fn accept<S: PollStream, T: PollTimer>(
    io: S,
    config: Arc<ServerConfig>,
    timer: T,
    timeout: Duration,
) -> impl Future<Output = io::Result<TlsStream<S>>> {
    let stream = TlsStream::server(io, config);
    async move { handshake(stream?, timer, timeout).await }
}

/// The client side of a TLS session over `io` to the server `name`, its handshake run within
/// `timeout` (by `timer`, the driver's clock).
pub fn connect<S: PollStream, T: PollTimer>(
    io: S,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    timer: T,
    timeout: Duration,
) -> impl Future<Output = io::Result<TlsStream<S>>> {
    let stream = TlsStream::client(io, config, name);
    async move { handshake(stream?, timer, timeout).await }
}
