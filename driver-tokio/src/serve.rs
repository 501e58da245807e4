//! Serving, connecting, and driving any stream.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use asynchat_core::driver::{run_chat, Accepted, Handle, NoCommands};
use asynchat_core::{Chat, Config, Misuse, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::conn::{Stream, Timer};

/// First pause after `accept` fails (out of descriptors); doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A running server: see [`serve`].
pub struct Server {
    addr: SocketAddr,
    handle: Handle,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle on its connections.
    #[must_use]
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Graceful shutdown: stops accepting, then flushes and closes every connection.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped accepting (after [`shutdown`](Self::shutdown)) and
    /// every connection has closed.
    pub async fn wait(self) {
        let _ = self.accept.await;
        while self.handle.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Accepts connections on `listener`, each running the protocol `factory` makes for it in a
/// task of its own, on the current runtime.
///
/// # Security
///
/// Every connection gets the limits of `config`. When `accept` fails (for instance out of file
/// descriptors), the server pauses with a growing delay instead of retrying at once.
pub fn serve<P, F>(listener: TcpListener, config: Config, mut factory: F) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let addr = listener.local_addr()?;
    let handle = Handle::new();
    let (stop, mut stopped) = watch::channel(false);
    let conns = handle.clone();
    let accept = tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        backoff = MIN_BACKOFF;
                        let _ = stream.set_nodelay(true);
                        let (id, commands) = conns.register(config.high_water);
                        let accepted = Accepted::new(id, peer, conns.clone());
                        let Ok(chat) = Chat::with_config(factory(&accepted), &config) else {
                            conns.unregister(id);
                            continue;
                        };
                        let conns = conns.clone();
                        let on_end = move || conns.unregister(id);
                        tokio::spawn(run_chat(chat, Stream(stream), Timer::default(), commands, on_end));
                    }
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                },
            }
        }
        conns.close_all_when_done();
    });
    Ok(Server {
        addr,
        handle,
        stop,
        accept,
    })
}

/// Connects to `addr` and runs `protocol` as a client until the connection closes. A failed
/// connect (refused, unreachable...) reaches the protocol's `closed` as
/// [`CloseReason::Io`](asynchat_core::CloseReason::Io).
pub async fn connect<P: Protocol>(
    addr: SocketAddr,
    protocol: P,
    config: &Config,
) -> Result<(), Misuse> {
    let mut chat = Chat::with_config(protocol, config)?;
    match TcpStream::connect(addr).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            run_chat(chat, Stream(stream), Timer::default(), NoCommands, || ()).await;
        }
        Err(e) => chat.handle_error(e),
    }
    Ok(())
}

/// Runs `protocol` over an already connected stream — TCP, a Unix socket, a TLS stream,
/// `tokio::io::duplex` — until it closes.
pub async fn run<P, S>(protocol: P, io: S, config: &Config) -> Result<(), Misuse>
where
    P: Protocol,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let chat = Chat::with_config(protocol, config)?;
    run_chat(chat, Stream(io), Timer::default(), NoCommands, || ()).await;
    Ok(())
}
