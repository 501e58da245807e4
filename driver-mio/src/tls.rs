//! TLS on mio (feature `tls`): the core's TLS layer ([`asynchat_core::tls`]) over the loop's
//! sockets, by the same code as on the other drivers. An accepted connection's handshake runs
//! in the loop, on the socket's readiness, within [`Config::handshake_timeout`]; the protocol
//! is told it is connected once the handshake is over. A peer that is not TLS, breaks the
//! handshake off or never finishes it closes that connection only, with
//! [`PeerError::Tls`](asynchat_core::PeerError::Tls) as the reason.
//!
//! [`Config::handshake_timeout`]: asynchat_core::Config::handshake_timeout

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use asynchat_core::driver::{Accepted, ConnId};
use asynchat_core::tls::rustls::pki_types::ServerName;
use asynchat_core::tls::rustls::{ClientConfig, ServerConfig};
use asynchat_core::tls::{StartTls, TlsStream};
use asynchat_core::{Chat, Config, Protocol};

use crate::conn::{Entry, StreamConn};
use crate::event_loop::{bind_listener, Bound, EventLoop, ListenSocket, Over};
use crate::io::{Socket, StreamIo, Transport};
use crate::multi::MultiLoop;

impl<S: StreamIo> Transport for TlsStream<Socket<S>> {
    type Io = S;

    fn socket(&mut self) -> Option<&mut Socket<S>> {
        Some(self.get_mut())
    }

    fn handshakes(&self) -> bool {
        self.is_handshaking()
    }

    fn poll_handshake(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Self::poll_handshake(self, cx)
    }
}

impl<S: StreamIo> Transport for StartTls<Socket<S>> {
    type Io = S;

    fn socket(&mut self) -> Option<&mut Socket<S>> {
        self.get_mut()
    }
}

/// The entry of a connection accepted over implicit TLS; `None` if the session cannot even be
/// set up (the protocol hears why in `closed`).
pub(crate) fn accepted<P: Protocol + 'static, S: StreamIo + 'static>(
    mut chat: Chat<P>,
    socket: Socket<S>,
    config: &Arc<ServerConfig>,
    now: Instant,
    handshake_deadline: Option<Instant>,
) -> Option<Box<dyn Entry>> {
    match TlsStream::server(socket, config.clone()) {
        Ok(stream) => Some(Box::new(StreamConn::accepted(
            chat,
            stream,
            now,
            handshake_deadline,
        ))),
        Err(e) => {
            chat.handle_error(e);
            None
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
impl MultiLoop {
    /// [`MultiLoop::start`] over TLS: each loop's connections run their handshake in that loop,
    /// as with [`EventLoop::listen_tls`].
    pub fn start_tls<P, F>(
        threads: usize,
        addr: SocketAddr,
        config: &Config,
        tls: Arc<ServerConfig>,
        factory: F,
    ) -> io::Result<Self>
    where
        P: Protocol + 'static,
        F: Fn(&Accepted) -> P + Send + Sync + 'static,
    {
        Self::start_over(threads, addr, config, || Over::Tls(tls.clone()), factory)
    }

    /// [`MultiLoop::start`] for a protocol that switches to TLS in band (STARTTLS), as with
    /// [`EventLoop::listen_starttls`].
    pub fn start_starttls<P, F>(
        threads: usize,
        addr: SocketAddr,
        config: &Config,
        tls: Arc<ServerConfig>,
        factory: F,
    ) -> io::Result<Self>
    where
        P: Protocol + 'static,
        F: Fn(&Accepted) -> P + Send + Sync + 'static,
    {
        Self::start_over(
            threads,
            addr,
            config,
            || Over::StartTls(tls.clone()),
            factory,
        )
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
impl EventLoop {
    /// [`listen`](Self::listen) over TLS: each accepted connection's handshake runs in the
    /// loop, then `factory`'s protocol runs over the plaintext.
    pub fn listen_tls<P, F>(
        &mut self,
        addr: SocketAddr,
        tls: Arc<ServerConfig>,
        factory: F,
    ) -> io::Result<Bound>
    where
        P: Protocol + 'static,
        F: FnMut(&Accepted) -> P + 'static,
    {
        self.listen_over(addr, factory, Over::Tls(tls))
    }

    /// [`listen`](Self::listen) for a protocol that switches to TLS in band (STARTTLS): each
    /// connection starts in plaintext, and switches when its protocol calls
    /// [`Context::start_tls`](asynchat_core::Context::start_tls).
    pub fn listen_starttls<P, F>(
        &mut self,
        addr: SocketAddr,
        tls: Arc<ServerConfig>,
        factory: F,
    ) -> io::Result<Bound>
    where
        P: Protocol + 'static,
        F: FnMut(&Accepted) -> P + 'static,
    {
        self.listen_over(addr, factory, Over::StartTls(tls))
    }

    fn listen_over<P, F>(&mut self, addr: SocketAddr, factory: F, over: Over) -> io::Result<Bound>
    where
        P: Protocol + 'static,
        F: FnMut(&Accepted) -> P + 'static,
    {
        let socket = bind_listener(addr, false)?;
        let addr = socket.local_addr()?;
        let id = self.add_listen_socket_over(ListenSocket::Tcp(socket), factory, over)?;
        Ok(Bound { id, addr })
    }

    /// [`connect`](Self::connect) over TLS to the server `name` (sent as SNI; its certificate
    /// must carry it), verified as `tls` says. The connect and the handshake together must be
    /// over within [`Config::handshake_timeout`](asynchat_core::Config::handshake_timeout);
    /// the protocol is told it is connected once they are.
    pub fn connect_tls<P: Protocol + 'static>(
        &mut self,
        addr: SocketAddr,
        name: ServerName<'static>,
        tls: Arc<ClientConfig>,
        protocol: P,
    ) -> io::Result<ConnId> {
        self.connect_over(addr, protocol, |socket| {
            TlsStream::client(socket, tls, name)
        })
    }
}
