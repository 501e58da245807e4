//! TLS on tokio (feature `tls`): the core's TLS layer ([`asynchat_core::tls`]) over tokio's
//! streams. The handshake runs in the connection's own task, within
//! [`Config::handshake_timeout`]; a peer that is not TLS, breaks the handshake off or never
//! finishes it closes that connection only, with
//! [`PeerError::Tls`](asynchat_core::PeerError::Tls) as the reason.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use asynchat_core::driver::{outside_server, run_chat_after, Accepted, Connection, Server};
use asynchat_core::tls::rustls::pki_types::ServerName;
use asynchat_core::tls::rustls::{ClientConfig, ServerConfig};
use asynchat_core::{Chat, Config, Misuse, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};

pub use asynchat_core::tls::{client_config, server_config_from_pem, StartTls, TlsStream};

use crate::conn::{Stream, Timer};
use crate::serve::{serve_polled, tcp_connect, Listener};

/// [`serve`](crate::serve) over TLS: each accepted connection's handshake runs in its own task,
/// then `factory`'s protocol runs over the plaintext. The listener may be TCP or Unix.
pub fn serve_tls<L, P, F>(
    listener: L,
    tls: Arc<ServerConfig>,
    config: Config,
    factory: F,
) -> io::Result<Server<L::Addr>>
where
    L: Listener,
    L::Conn: AsyncRead + AsyncWrite + Unpin,
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let timeout = config.handshake_timeout;
    serve_polled(listener, config, factory, move |conn| {
        asynchat_core::tls::accept(Stream(conn), tls.clone(), Timer::default(), timeout)
    })
}

/// [`serve`](crate::serve) for a protocol that switches to TLS in band (STARTTLS): each
/// connection starts in plaintext, and switches when its protocol calls
/// [`Context::start_tls`](asynchat_core::Context::start_tls).
pub fn serve_starttls<L, P, F>(
    listener: L,
    tls: Arc<ServerConfig>,
    config: Config,
    factory: F,
) -> io::Result<Server<L::Addr>>
where
    L: Listener,
    L::Conn: AsyncRead + AsyncWrite + Unpin,
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let timeout = config.handshake_timeout;
    serve_polled(listener, config, factory, move |conn| {
        std::future::ready(Ok(
            StartTls::server(Stream(conn), tls.clone()).with_handshake_timeout(timeout)
        ))
    })
}

/// [`connect`](crate::connect) over TLS to the server `name` (sent as SNI; its certificate must
/// carry it), verified as `tls` says; the handshake runs within
/// [`Config::handshake_timeout`].
pub fn connect_tls<P>(
    addr: SocketAddr,
    name: ServerName<'static>,
    tls: Arc<ClientConfig>,
    protocol: P,
    config: Config,
) -> Result<Connection, Misuse>
where
    P: Protocol + Send + 'static,
{
    let chat = Chat::with_config(protocol, &config)?;
    let (handle, commands) = outside_server(config.high_water);
    let timeout = config.handshake_timeout;
    let stream = async move {
        let tcp = tcp_connect(addr).await?;
        asynchat_core::tls::connect(tcp, tls, name, Timer::default(), timeout).await
    };
    Ok(Connection::new(
        handle,
        run_chat_after(chat, stream, Timer::default(), commands, |_| ()),
    ))
}
