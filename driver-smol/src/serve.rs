//! Serving, connecting, driving any stream, and reaching connections through a handle.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use asynchat_core::driver::{
    mailbox, Command, MailboxReceiver, MailboxSender, NoCommands, Registry,
};
use asynchat_core::{Bytes, Chat, Config, Misuse, Protocol};
use smol::channel::Sender;
use smol::io::{AsyncRead, AsyncWrite};
use smol::{Async, Task, Timer};

use crate::conn::drive;

/// First pause after `accept` fails (out of descriptors); doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Names one connection of a [`Handle`]'s server. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

/// A `Send + Clone` handle on a server's connections: push bytes to one, close it, or shut
/// them all down gracefully, from any task or thread.
#[derive(Clone, Default)]
pub struct Handle {
    registry: Arc<Registry<MailboxSender>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// A handle with no connections yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn register(&self) -> (ConnId, MailboxReceiver) {
        let (tx, rx) = mailbox();
        (ConnId(self.registry.insert(tx)), rx)
    }

    fn send(&self, id: ConnId, command: Command) -> bool {
        self.registry
            .with(id.0, |tx| tx.send(command))
            .unwrap_or(false)
    }

    /// Queues `data` on connection `id`; `false` if it has closed.
    pub fn push(&self, id: ConnId, data: impl Into<Bytes>) -> bool {
        self.send(id, Command::Push(data.into()))
    }

    /// Flushes connection `id`, then closes it; `false` if it has closed.
    pub fn close_when_done(&self, id: ConnId) -> bool {
        self.send(id, Command::CloseWhenDone)
    }

    /// Closes connection `id` now, dropping its queued output; `false` if it has closed.
    pub fn close(&self, id: ConnId) -> bool {
        self.send(id, Command::Close)
    }

    /// Connections open now.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.registry.len()
    }

    /// Flushes and closes every connection.
    pub fn close_all_when_done(&self) {
        self.registry.for_each(|tx| {
            tx.send(Command::CloseWhenDone);
        });
    }
}

/// A new connection, as seen by the factory of [`serve`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Accepted {
    /// The connection's id, for [`Handle`] commands.
    pub id: ConnId,
    /// The peer's address.
    pub peer: SocketAddr,
    /// A handle on the server's connections.
    pub handle: Handle,
}

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
                    let (id, commands) = conns.register();
                    let accepted = Accepted {
                        id,
                        peer,
                        handle: conns.clone(),
                    };
                    let Ok(chat) = Chat::with_config(factory(&accepted), &config) else {
                        conns.registry.remove(id.0);
                        continue;
                    };
                    let conns = conns.clone();
                    smol::spawn(drive(chat, stream, commands, move || {
                        conns.registry.remove(id.0)
                    }))
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
            drive(chat, stream, NoCommands, || ()).await;
        }
        Err(e) => chat.handle_error(e),
    }
    Ok(())
}

/// Runs `protocol` over an already connected `futures-io` stream until it closes.
pub async fn run<P, S>(protocol: P, io: S, config: &Config) -> Result<(), Misuse>
where
    P: Protocol,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let chat = Chat::with_config(protocol, config)?;
    drive(chat, io, NoCommands, || ()).await;
    Ok(())
}
