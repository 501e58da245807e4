//! Serving, connecting, and driving any stream.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use asynchat_core::driver::{run_chat, Accepted, Handle, NoCommands};
use asynchat_core::{Chat, Config, Misuse, Protocol};
use smol::channel::Sender;
use smol::io::{AsyncRead, AsyncWrite};
use smol::{Async, Task, Timer};

use crate::conn::{Deadline, Stream, Tcp};

/// First pause after `accept` fails (out of descriptors); doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A running server: see [`serve`].
pub struct Server {
    addr: SocketAddr,
    handle: Handle,
    stop: Sender<()>,
    accept: Task<()>,
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
        let _ = self.stop.try_send(());
    }

    /// Waits until the server has stopped accepting (after [`shutdown`](Self::shutdown)) and
    /// every connection has closed.
    pub async fn wait(self) {
        self.accept.await;
        while self.handle.connections() > 0 {
            Timer::after(Duration::from_millis(5)).await;
        }
    }
}

/// Accepts connections on `listener`, each running the protocol `factory` makes for it in a
/// task of its own on smol's global executor.
///
/// # Security
///
/// Every connection gets the limits of `config`. When `accept` fails (for instance out of file
/// descriptors), the server pauses with a growing delay instead of retrying at once.
pub fn serve<P, F>(
    listener: Async<TcpListener>,
    config: Config,
    mut factory: F,
) -> io::Result<Server>
where
    P: Protocol + Send + 'static,
    F: FnMut(&Accepted) -> P + Send + 'static,
{
    let addr = listener.get_ref().local_addr()?;
    let handle = Handle::new();
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let conns = handle.clone();
    let accept = smol::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        loop {
            let next = smol::future::or(async { Some(listener.accept().await) }, async {
                let _ = stopped.recv().await;
                None
            });
            match next.await {
                None => break,
                Some(Ok((stream, peer))) => {
                    backoff = MIN_BACKOFF;
                    let _ = stream.get_ref().set_nodelay(true);
                    let (id, commands) = conns.register(config.high_water);
                    let accepted = Accepted::new(id, peer, conns.clone());
                    let Ok(chat) = Chat::with_config(factory(&accepted), &config) else {
                        conns.unregister(id);
                        continue;
                    };
                    let conns = conns.clone();
                    let on_end = move || conns.unregister(id);
                    smol::spawn(run_chat(
                        chat,
                        Tcp::new(stream),
                        Deadline::default(),
                        commands,
                        on_end,
                    ))
                    .detach();
                }
                Some(Err(_)) => {
                    Timer::after(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
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
/// connect reaches the protocol's `closed` as [`CloseReason::Io`](asynchat_core::CloseReason::Io).
pub async fn connect<P: Protocol>(
    addr: SocketAddr,
    protocol: P,
    config: &Config,
) -> Result<(), Misuse> {
    let mut chat = Chat::with_config(protocol, config)?;
    match Async::<TcpStream>::connect(addr).await {
        Ok(stream) => {
            let _ = stream.get_ref().set_nodelay(true);
            run_chat(
                chat,
                Tcp::new(stream),
                Deadline::default(),
                NoCommands,
                || (),
            )
            .await;
        }
        Err(e) => chat.handle_error(e),
    }
    Ok(())
}

/// Runs `protocol` over an already connected `futures-io` stream until it closes: a Unix
/// socket (`smol::Async<UnixStream>`), a TLS stream, any stream of another runtime.
///
/// A graceful close ends with the stream's `poll_close`. async-io's `poll_close` on a socket,
/// TCP or Unix, only flushes: the peer then sees the end of the stream when `run` returns, once
/// it has closed its own side or after [`LINGER`](asynchat_core::driver::LINGER). For TCP,
/// [`serve`] and [`connect`] shut the write side down.
pub async fn run<P, S>(protocol: P, io: S, config: &Config) -> Result<(), Misuse>
where
    P: Protocol,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let chat = Chat::with_config(protocol, config)?;
    run_chat(chat, Stream(io), Deadline::default(), NoCommands, || ()).await;
    Ok(())
}
