//! TLS on any futures-io executor (feature `tls`): the core's TLS layer
//! ([`asynchat_core::tls`]) over async-io's TCP sockets. The handshake runs in the
//! connection's own task, within [`Config::handshake_timeout`]; a peer that is not TLS, breaks
//! the handshake off or never finishes it closes that connection only, with
//! [`PeerError::Tls`](asynchat_core::PeerError::Tls) as the reason.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use async_io::Async;
use asynchat_core::driver::{outside_server, run_chat_after, Accepted, Connection, Server};
use asynchat_core::tls::rustls::pki_types::ServerName;
use asynchat_core::tls::rustls::{ClientConfig, ServerConfig};
use asynchat_core::{Chat, Config, Misuse, Protocol};

pub use asynchat_core::tls::{client_config, server_config_from_pem, StartTls, TlsStream};

use crate::conn::{Deadline, Tcp};
use crate::serve::{serve_tcp_polled, tcp_connect, Spawner};

/// [`serve_on`](crate::serve_on) over TLS: each accepted connection's handshake runs in its own
/// task (spawned by `spawner`), then `factory`'s protocol runs over the plaintext.
pub fn serve_tls_on<P, F>(
    spawner: &Spawner,
    listener: Async<TcpListener>,
    tls: Arc<ServerConfig>,
    config: Config,
    factory: F,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let timeout = config.handshake_timeout;
    serve_tcp_polled(spawner, listener, config, factory, move |stream| {
        asynchat_core::tls::accept(Tcp::new(stream), tls.clone(), Deadline::default(), timeout)
    })
}

/// [`serve_on`](crate::serve_on) for a protocol that switches to TLS in band (STARTTLS): each
/// connection starts in plaintext, and switches when its protocol calls
/// [`Context::start_tls`](asynchat_core::Context::start_tls).
pub fn serve_starttls_on<P, F>(
    spawner: &Spawner,
    listener: Async<TcpListener>,
    tls: Arc<ServerConfig>,
    config: Config,
    factory: F,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let timeout = config.handshake_timeout;
    serve_tcp_polled(spawner, listener, config, factory, move |stream| {
        std::future::ready(Ok(
            StartTls::server(Tcp::new(stream), tls.clone()).with_handshake_timeout(timeout)
        ))
    })
}

/// [`serve_starttls_on`] on smol's global executor.
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub fn serve_starttls<P, F>(
    listener: Async<TcpListener>,
    tls: Arc<ServerConfig>,
    config: Config,
    factory: F,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    serve_starttls_on(&Spawner::smol(), listener, tls, config, factory)
}

/// [`serve_tls_on`] on smol's global executor.
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub fn serve_tls<P, F>(
    listener: Async<TcpListener>,
    tls: Arc<ServerConfig>,
    config: Config,
    factory: F,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    serve_tls_on(&Spawner::smol(), listener, tls, config, factory)
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
        asynchat_core::tls::connect(tcp, tls, name, Deadline::default(), timeout).await
    };
    Ok(Connection::new(
        handle,
        run_chat_after(chat, stream, Deadline::default(), commands, |_| ()),
    ))
}
