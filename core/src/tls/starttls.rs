//! A stream that starts in plaintext and switches to TLS when its chat asks (STARTTLS).

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

use super::TlsStream;
use crate::driver::PollStream;

/// Which side of TLS a [`StartTls`] stream takes when it switches.
enum Side {
    Server(Arc<ServerConfig>),
    Client(Arc<ClientConfig>, ServerName<'static>),
}

enum Phase<S> {
    Plain(S, Side),
    /// Boxed: a plaintext connection should not carry the room of a TLS session (a kilobyte).
    Tls(Box<Switched<S>>),
    /// The switch failed: the stream is gone.
    Gone,
}

/// The stream once switched, and when its handshake must be over.
struct Switched<S> {
    tls: TlsStream<S>,
    handshake_deadline: Option<Instant>,
}

/// A stream in plaintext until its chat calls for TLS ([`Context::start_tls`](crate::Context::start_tls)),
/// then TLS over the same stream: what a driver serves a STARTTLS protocol over (SMTP, IMAP,
/// POP3, FTP, XMPP).
///
/// The switch happens in [`PollStream::start_tls`], which the core's connection loop calls once
/// the chat's plaintext output is written; the handshake then runs as the stream is read and
/// written, and must be over within the handshake timeout
/// ([`DEFAULT_HANDSHAKE_TIMEOUT`](super::DEFAULT_HANDSHAKE_TIMEOUT) unless
/// [`with_handshake_timeout`](Self::with_handshake_timeout) says otherwise), or the connection
/// closes with [`TlsError::HandshakeTimedOut`](crate::TlsError::HandshakeTimedOut). Bytes the
/// peer sent before the switch never reach TLS: the chat discarded them when it asked for the
/// switch.
pub struct StartTls<S> {
    phase: Phase<S>,
    handshake_timeout: Duration,
}

impl<S> std::fmt::Debug for StartTls<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match &self.phase {
            Phase::Plain(..) => "plain",
            Phase::Tls(_) => "tls",
            Phase::Gone => "gone",
        };
        f.debug_struct("StartTls").field("phase", &phase).finish()
    }
}

impl<S: PollStream> StartTls<S> {
    /// A server's stream: plaintext, then the server side of TLS with `config`.
    pub fn server(io: S, config: Arc<ServerConfig>) -> Self {
        Self {
            phase: Phase::Plain(io, Side::Server(config)),
            handshake_timeout: super::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// A client's stream: plaintext, then the client side of TLS with `config`, to the server
    /// named `name`.
    pub fn client(io: S, config: Arc<ClientConfig>, name: ServerName<'static>) -> Self {
        Self {
            phase: Phase::Plain(io, Side::Client(config, name)),
            handshake_timeout: super::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// How long the handshake after the switch may take (drivers pass
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout)).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The TLS session, once switched.
    #[must_use]
    pub fn tls(&self) -> Option<&TlsStream<S>> {
        match &self.phase {
            Phase::Tls(switched) => Some(&switched.tls),
            _ => None,
        }
    }

    /// The stream underneath, plaintext or under TLS; `None` once a failed switch has lost it
    /// (the connection is closing then).
    pub fn get_mut(&mut self) -> Option<&mut S> {
        match &mut self.phase {
            Phase::Plain(io, _) => Some(io),
            Phase::Tls(switched) => Some(switched.tls.get_mut()),
            Phase::Gone => None,
        }
    }

    fn stream(&mut self) -> io::Result<&mut dyn PollStream> {
        match &mut self.phase {
            Phase::Plain(io, _) => Ok(io),
            Phase::Tls(switched) => Ok(&mut switched.tls),
            Phase::Gone => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the switch to TLS failed",
            )),
        }
    }
}

impl<S: PollStream> PollStream for StartTls<S> {
    fn poll_read_into(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(io) => io.poll_read_into(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(io) => io.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(io) => io.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_read_ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Poll<io::Result<()>>> {
        self.stream().ok()?.poll_read_ready(cx)
    }

    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(io) => io.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn start_tls(&mut self, now: Instant) -> io::Result<()> {
        let handshake_deadline = now.checked_add(self.handshake_timeout);
        let switched = |tls| {
            Phase::Tls(Box::new(Switched {
                tls,
                handshake_deadline,
            }))
        };
        match std::mem::replace(&mut self.phase, Phase::Gone) {
            Phase::Plain(io, Side::Server(config)) => {
                self.phase = switched(TlsStream::server(io, config)?);
                Ok(())
            }
            Phase::Plain(io, Side::Client(config, name)) => {
                self.phase = switched(TlsStream::client(io, config, name)?);
                Ok(())
            }
            Phase::Tls(tls) => {
                self.phase = Phase::Tls(tls);
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "STARTTLS: the connection is already TLS",
                ))
            }
            Phase::Gone => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the switch to TLS failed",
            )),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Tls(switched) if switched.tls.is_handshaking() => switched.handshake_deadline,
            _ => None,
        }
    }

    fn handle_deadline(&mut self, now: Instant) -> io::Result<()> {
        match self.deadline() {
            Some(at) if at <= now => {
                Err(super::stream::tls_error(crate::TlsError::HandshakeTimedOut))
            }
            _ => Ok(()),
        }
    }
}
