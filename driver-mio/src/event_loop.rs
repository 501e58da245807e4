//! The reactor: asyncore's `loop()`, on mio, with deadlines and a cross-thread handle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asynchat_core::{Chat, Config, DatagramChat, DatagramProtocol, Protocol};
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Protocol as SockProtocol, Type};

use crate::conn::{Cx, Entry, StreamConn};
use crate::dispatcher::{Dispatcher, RawEntry};
use crate::handle::{Command, Handle, Key, Role, Shared};
use crate::io::{PipePair, Socket, StreamIo, Transport};
use crate::udp::UdpEntry;
use asynchat_core::driver::{
    Accepted, ConnId, PeerAddr, MAX_ACCEPT_BACKOFF as MAX_BACKOFF,
    MIN_ACCEPT_BACKOFF as MIN_BACKOFF,
};

const WAKER: Token = Token(usize::MAX);
/// Backlog of listening sockets (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// A socket bound by [`EventLoop::listen`] or [`EventLoop::bind_udp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bound {
    /// Its id: [`Handle::close`] stops it.
    pub id: ConnId,
    /// The address it is bound to (with the port the system chose, if 0 was asked for).
    pub addr: SocketAddr,
}

type MakeConn = Box<dyn FnMut(Accepted, Incoming, Instant) -> Option<Box<dyn Entry>>>;

/// What the connections of a listener run over.
pub(crate) enum Over {
    Plain,
    /// Implicit TLS: the handshake first.
    #[cfg(feature = "tls")]
    Tls(Arc<asynchat_core::tls::rustls::ServerConfig>),
    /// Plaintext until the protocol switches (STARTTLS).
    #[cfg(feature = "tls")]
    StartTls(Arc<asynchat_core::tls::rustls::ServerConfig>),
}

impl Over {
    /// The loop's entry for an accepted connection on `io`.
    fn entry<P: Protocol + 'static, S: StreamIo + 'static>(
        &self,
        chat: Chat<P>,
        io: S,
        now: Instant,
        handshake_timeout: Duration,
    ) -> Option<Box<dyn Entry>> {
        let socket = Socket::new(io);
        let handshake_deadline = now.checked_add(handshake_timeout);
        match self {
            Self::Plain => Some(Box::new(StreamConn::accepted(
                chat,
                socket,
                now,
                handshake_deadline,
            ))),
            #[cfg(feature = "tls")]
            Self::Tls(config) => {
                crate::tls::accepted(chat, socket, config, now, handshake_deadline)
            }
            #[cfg(feature = "tls")]
            Self::StartTls(config) => {
                let stream = asynchat_core::tls::StartTls::server(socket, config.clone())
                    .with_handshake_timeout(handshake_timeout);
                Some(Box::new(StreamConn::accepted(
                    chat,
                    stream,
                    now,
                    handshake_deadline,
                )))
            }
        }
    }
}

/// A listening socket: TCP or Unix-domain.
pub(crate) enum ListenSocket {
    Tcp(TcpListener),
    Unix(mio::net::UnixListener),
}

/// A connection a listener accepted.
enum Incoming {
    Tcp(TcpStream),
    Unix(mio::net::UnixStream),
}

impl ListenSocket {
    fn accept(&self) -> io::Result<(Incoming, PeerAddr)> {
        match self {
            Self::Tcp(l) => l.accept().map(|(s, peer)| {
                let _ = s.set_nodelay(true);
                (Incoming::Tcp(s), PeerAddr::Tcp(peer))
            }),
            Self::Unix(l) => l.accept().map(|(s, peer)| {
                let path = peer.as_pathname().map(std::path::Path::to_path_buf);
                (Incoming::Unix(s), PeerAddr::Unix(path))
            }),
        }
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Self::Tcp(l) => l,
            Self::Unix(l) => l,
        }
    }
}

struct Listener {
    socket: ListenSocket,
    make: MakeConn,
    /// Accepting is paused until then, after running out of file descriptors.
    paused_until: Option<Instant>,
    backoff: Duration,
}

enum Kind {
    /// Boxed so that the slot of every connection stays small.
    Listener(Box<Listener>),
    Entry(Box<dyn Entry>),
}

/// Deadlines as the loop keeps them: nanoseconds since the loop was made, in the 8 bytes of a
/// `u64` where an `Instant` takes 16 (every slot holds one, the heap one per wake-up). An
/// instant before the loop was made counts as that moment, which is past; one 584 years or more
/// after it, as the latest deadline there can be, just short of [`Ticks::NEVER`].
#[derive(Debug, Clone, Copy)]
struct Ticks {
    epoch: Instant,
}

impl Ticks {
    /// No deadline: later than every deadline there can be.
    const NEVER: u64 = u64::MAX;

    fn starting_now() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    fn of(self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).map_or(Self::NEVER - 1, |n| n.min(Self::NEVER - 1))
    }

    /// The instant `ticks` stands for; `None` if it lies past what an `Instant` can hold
    /// (then no wake-up is due in any time a loop could run).
    fn instant(self, ticks: u64) -> Option<Instant> {
        self.epoch.checked_add(Duration::from_nanos(ticks))
    }
}

struct Slot {
    generation: u32,
    /// The push bound of a connection pushed to through a handle (from the first push on),
    /// shared with the handle: the loop publishes the connection's output cost into it.
    backlog: Option<Arc<asynchat_core::backlog::Backlog>>,
    /// The deadline last put in the heap for this slot ([`Ticks`]; [`Ticks::NEVER`] for none).
    scheduled: u64,
    /// Accepted by a listener: its close is counted in the server's stats.
    accepted: bool,
    kind: Kind,
}

/// One thread's event loop: listeners, connections and UDP endpoints on one `mio::Poll`.
///
/// As asyncore's `loop()`: [`run`](Self::run) until nothing is left (or [`Handle::stop`]), or
/// [`run_once`](Self::run_once) for one turn. To embed it in a program with its own loop, wait
/// for the loop's file descriptor ([`AsRawFd`]) to be readable, then call `run_once` with a zero
/// timeout; [`next_deadline`](Self::next_deadline) says when it must run at the latest.
///
/// Readiness is edge-triggered: each socket is read until `WouldBlock` straight into its framer's
/// buffer and written with `writev` until `WouldBlock`; write interest is registered only while
/// output is pending; a connection above its output high water mark is not read until it drains.
/// Deadlines of every connection live in one heap, so a turn costs O(events + expired timers).
pub struct EventLoop {
    poll: Poll,
    events: Events,
    slots: Slab<Slot>,
    /// Wake-ups: (deadline in [`Ticks`], slot, generation of its occupant).
    timers: BinaryHeap<Reverse<(u64, usize, u32)>>,
    ticks: Ticks,
    shared: Arc<Shared>,
    next_generation: u32,
    config: Config,
    /// Slots holding listeners, to resume paused ones without scanning every connection.
    listeners: Vec<usize>,
    /// Scratch space reused every turn: the ready events, the due timers.
    ready: Vec<(usize, bool, bool, bool)>,
    /// Connections pushed to by the commands of this turn (reused: no allocation per turn).
    pushed: Vec<Key>,
    due: Vec<(u64, usize, u32)>,
    /// Connections that stopped at their turn budget with work left: driven again at the end
    /// of the next turn, after everything that was ready then (key, generation).
    yielded: Vec<(usize, u32)>,
    /// The list being resumed this turn (kept to reuse its allocation).
    resuming: Vec<(usize, u32)>,
    shutting_down: bool,
    /// When a shutdown with a deadline closes what is still open.
    shutdown_deadline: Option<Instant>,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("entries", &self.slots.len())
            .field("timers", &self.timers.len())
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl AsRawFd for EventLoop {
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

/// A non-blocking listening socket with `SO_REUSEADDR` (as asyncore's `set_reuse_addr`), and
/// `SO_REUSEPORT` when several loops share the port.
pub(crate) fn bind_listener(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Handles outlive their loop: once it is gone, what they send fails with
/// [`PushError::Closed`](asynchat_core::backlog::PushError::Closed) instead of queuing forever.
impl Drop for EventLoop {
    fn drop(&mut self) {
        self.shared.mark_gone();
    }
}

impl EventLoop {
    /// A loop whose connections use the default [`Config`].
    pub fn new() -> io::Result<Self> {
        Self::with_config(Config::default())
    }

    /// A loop whose connections use `config` (limits, water marks, idle timeout).
    pub fn with_config(config: Config) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Self {
            poll,
            events: Events::with_capacity(1024),
            slots: Slab::new(),
            timers: BinaryHeap::new(),
            ticks: Ticks::starting_now(),
            shared: Shared::new(waker, config.high_water),
            next_generation: 0,
            config,
            listeners: Vec::new(),
            ready: Vec::new(),
            pushed: Vec::new(),
            due: Vec::new(),
            yielded: Vec::new(),
            resuming: Vec::new(),
            shutting_down: false,
            shutdown_deadline: None,
        })
    }

    /// A handle to reach this loop from anywhere.
    #[must_use]
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Listeners, connections and endpoints in the loop.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is left in the loop.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Listens on `addr`; each accepted connection runs the protocol `factory` makes for it
    /// (asyncore's `handle_accepted`). `SO_REUSEADDR` is set.
    pub fn listen<P, F>(&mut self, addr: SocketAddr, factory: F) -> io::Result<Bound>
    where
        P: Protocol + 'static,
        F: FnMut(&Accepted) -> P + 'static,
    {
        let socket = bind_listener(addr, false)?;
        self.add_listener(socket, factory)
    }

    pub(crate) fn add_listener<P, F>(
        &mut self,
        socket: TcpListener,
        factory: F,
    ) -> io::Result<Bound>
    where
        P: Protocol + 'static,
        F: FnMut(&Accepted) -> P + 'static,
    {
        let addr = socket.local_addr()?;
        let id = self.add_listen_socket(ListenSocket::Tcp(socket), factory)?;
        Ok(Bound { id, addr })
    }

    /// Listens on the Unix-domain socket `path` (which must not exist yet); each accepted
    /// connection runs the protocol `factory` makes for it, as with [`listen`](Self::listen).
    /// Returns the listener's id: [`Handle::close`] stops it.
    pub fn listen_unix<P, F>(
        &mut self,
        path: impl AsRef<std::path::Path>,
        factory: F,
    ) -> io::Result<ConnId>
    where
        P: Protocol + 'static,
        F: FnMut(&Accepted) -> P + 'static,
    {
        let socket = mio::net::UnixListener::bind(path)?;
        self.add_listen_socket(ListenSocket::Unix(socket), factory)
    }

    fn add_listen_socket<P, F>(&mut self, socket: ListenSocket, factory: F) -> io::Result<ConnId>
    where
        P: Protocol + 'static,
        F: FnMut(&Accepted) -> P + 'static,
    {
        self.add_listen_socket_over(socket, factory, Over::Plain)
    }

    /// A listener whose connections run over `over`: plaintext, or a TLS layer.
    pub(crate) fn add_listen_socket_over<P, F>(
        &mut self,
        socket: ListenSocket,
        mut factory: F,
        over: Over,
    ) -> io::Result<ConnId>
    where
        P: Protocol + 'static,
        F: FnMut(&Accepted) -> P + 'static,
    {
        let config = self.config.clone();
        let make: MakeConn = Box::new(move |accepted, incoming, now| {
            // A protocol whose first terminator is invalid cannot run: the connection is dropped.
            let chat = Chat::with_config(factory(&accepted), &config).ok()?;
            let timeout = config.handshake_timeout;
            match incoming {
                Incoming::Tcp(stream) => over.entry(chat, stream, now, timeout),
                Incoming::Unix(stream) => over.entry(chat, stream, now, timeout),
            }
        });
        let mut listener = Listener {
            socket,
            make,
            paused_until: None,
            backoff: MIN_BACKOFF,
        };
        let key = self.slots.vacant_key();
        self.poll
            .registry()
            .register(listener.socket.source(), Token(key), Interest::READABLE)?;
        let id = self.insert(Kind::Listener(Box::new(listener)), false);
        self.listeners.push(id.key);
        Ok(id.id())
    }

    /// Connects to `addr` with `protocol` as a client. The connect completes in the loop; if it
    /// fails (refused, unreachable...) the protocol's `closed` gets
    /// [`CloseReason::Io`](asynchat_core::CloseReason::Io) with the error. A failure before any
    /// socket exists is also returned here.
    pub fn connect<P: Protocol + 'static>(
        &mut self,
        addr: SocketAddr,
        protocol: P,
    ) -> io::Result<ConnId> {
        self.connect_over(addr, protocol, Ok)
    }

    /// [`connect`](Self::connect) with the socket wrapped by `over` (a TLS client's layer).
    pub(crate) fn connect_over<P, T>(
        &mut self,
        addr: SocketAddr,
        protocol: P,
        over: impl FnOnce(Socket<TcpStream>) -> io::Result<T>,
    ) -> io::Result<ConnId>
    where
        P: Protocol + 'static,
        T: Transport + 'static,
    {
        let mut chat = Chat::with_config(protocol, &self.config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = TcpStream::connect(addr).and_then(|stream| {
            let _ = stream.set_nodelay(true);
            over(Socket::new(stream))
        });
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                let kind = e.kind();
                let text = e.to_string();
                chat.handle_error(e);
                return Err(io::Error::new(kind, text));
            }
        };
        let handshake_deadline = Instant::now().checked_add(self.config.handshake_timeout);
        let entry = Box::new(StreamConn::connecting(chat, stream, handshake_deadline));
        self.add_entry(entry, false)
    }

    /// Runs `protocol` over a pipe pair — bytes come in on `input`, go out on `output` —
    /// as asyncore's `file_dispatcher`. Both ends are made non-blocking.
    pub fn attach_pipe<P: Protocol + 'static>(
        &mut self,
        input: mio::unix::pipe::Receiver,
        output: mio::unix::pipe::Sender,
        protocol: P,
    ) -> io::Result<ConnId> {
        input.set_nonblocking(true)?;
        output.set_nonblocking(true)?;
        let chat = Chat::with_config(protocol, &self.config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let io = PipePair {
            input,
            output: Some(output),
        };
        let now = Instant::now();
        self.add_entry(
            Box::new(StreamConn::accepted(chat, Socket::new(io), now, None)),
            false,
        )
    }

    /// Runs `protocol` over this process's stdin and stdout (duplicated descriptors).
    ///
    /// They are switched to non-blocking mode, which is shared with every process using the same
    /// open file (a terminal, say) until the program exits. A regular file cannot be polled: use
    /// a pipe or a terminal.
    pub fn attach_stdio<P: Protocol + 'static>(&mut self, protocol: P) -> io::Result<ConnId> {
        use std::os::fd::AsFd;
        let input = std::io::stdin().as_fd().try_clone_to_owned()?;
        let output = std::io::stdout().as_fd().try_clone_to_owned()?;
        self.attach_pipe(input.into(), output.into(), protocol)
    }

    /// Adds a raw [`Dispatcher`] (asyncore's `dispatcher`): readiness callbacks on any source.
    pub fn add_dispatcher<D: Dispatcher + 'static>(&mut self, dispatcher: D) -> io::Result<ConnId> {
        let entry = RawEntry::new(dispatcher, self.handle());
        self.add_entry(Box::new(entry), false)
    }

    /// Binds a UDP endpoint running `protocol`.
    pub fn bind_udp<P: DatagramProtocol + 'static>(
        &mut self,
        addr: SocketAddr,
        protocol: P,
    ) -> io::Result<Bound> {
        let socket = UdpSocket::bind(addr)?;
        let addr = socket.local_addr()?;
        let id = self.add_entry(
            Box::new(UdpEntry::new(DatagramChat::new(protocol), socket)),
            false,
        )?;
        Ok(Bound { id, addr })
    }

    /// Adds `entry`; `accepted` by a listener, its close is counted in the server's stats
    /// (set before its first drive, which may already end it).
    fn add_entry(&mut self, mut entry: Box<dyn Entry>, accepted: bool) -> io::Result<ConnId> {
        let key = self.slots.vacant_key();
        entry.register(self.poll.registry(), Token(key))?;
        let id = self.insert(Kind::Entry(entry), accepted);
        // Drive it once: `connected` may have queued a greeting, and an edge-triggered socket
        // will not report readiness that already existed.
        self.with_entry(key, None, Instant::now(), |e, cx| {
            e.on_ready(cx, false, false)
        });
        Ok(id.id())
    }

    fn insert(&mut self, kind: Kind, accepted: bool) -> Key {
        // Never 0: the handles' book marks a vacant slot with it.
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let generation = self.next_generation;
        let key = self.slots.insert(Slot {
            generation,
            backlog: None,
            scheduled: Ticks::NEVER,
            accepted,
            kind,
        });
        let id = Key { key, generation };
        let role = match &self.slots[key].kind {
            Kind::Entry(entry) if accepted => {
                debug_assert!(entry.takes_pushes());
                Role::Accepted
            }
            Kind::Entry(entry) if entry.takes_pushes() => Role::Stream,
            _ => Role::Other,
        };
        self.shared.arrived(id, role);
        id
    }

    /// Runs until nothing is left in the loop, [`Handle::stop`] is called, or a poll error.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.slots.is_empty() && !self.shared.stop_requested() {
            self.run_once(None)?;
        }
        Ok(())
    }

    /// One turn: waits for readiness at most `timeout` (and no later than the next deadline;
    /// not at all while a connection that used up its turn budget has work left), then handles
    /// what is ready, the handle's commands, the expired deadlines, and last the connections
    /// that yielded in the turn before.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        let mut resuming = std::mem::take(&mut self.resuming);
        std::mem::swap(&mut resuming, &mut self.yielded);
        let until_deadline = self
            .next_deadline()
            .map(|at| at.saturating_duration_since(now));
        let wait = if resuming.is_empty() {
            [timeout, until_deadline].into_iter().flatten().min()
        } else {
            Some(Duration::ZERO)
        };
        match self.poll.poll(&mut self.events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        let mut ready = std::mem::take(&mut self.ready);
        ready.extend(self.events.iter().map(|e| {
            // Hang-ups and errors are discovered by reading and writing.
            let hangup = e.is_read_closed() || e.is_error();
            let readable = e.is_readable() || hangup;
            let writable = e.is_writable() || e.is_write_closed() || e.is_error();
            (e.token().0, readable, writable, hangup)
        }));
        for &(key, readable, writable, hangup) in &ready {
            if key != WAKER.0 {
                self.dispatch(key, readable, writable, hangup, now);
            }
        }
        ready.clear();
        self.ready = ready;
        self.run_commands(now);
        self.fire_timers(now);
        if self.shutdown_deadline.is_some_and(|at| at <= now) {
            // Shut down with a deadline that has passed: what is still open is closed, its
            // output dropped (a peer that never reads cannot hold the loop).
            self.shutdown_deadline = None;
            let keys: Vec<(usize, u32)> =
                self.slots.iter().map(|(k, s)| (k, s.generation)).collect();
            for (key, generation) in keys {
                self.close(Key { key, generation }, false, now);
            }
        }
        resuming.sort_unstable();
        resuming.dedup();
        for &(key, generation) in &resuming {
            self.with_entry(key, Some(generation), now, |e, cx| {
                e.on_ready(cx, false, false);
            });
        }
        resuming.clear();
        self.resuming = resuming;
        Ok(())
    }

    /// The earliest deadline of any connection (or of a paused listener).
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self
            .timers
            .peek()
            .and_then(|Reverse((at, _, _))| self.ticks.instant(*at));
        [timer, self.shutdown_deadline].into_iter().flatten().min()
    }

    fn dispatch(&mut self, key: usize, readable: bool, writable: bool, hangup: bool, now: Instant) {
        match self.slots.get_mut(key).map(|s| &mut s.kind) {
            Some(Kind::Listener(_)) => self.accept(key, now),
            Some(Kind::Entry(_)) => {
                self.with_entry(key, None, now, |e, cx| {
                    cx.hangup = hangup;
                    e.on_ready(cx, readable, writable);
                });
            }
            None => {}
        }
    }

    fn accept(&mut self, key: usize, now: Instant) {
        loop {
            let Some(Slot {
                kind: Kind::Listener(listener),
                ..
            }) = self.slots.get_mut(key)
            else {
                return;
            };
            if let Some(at) = listener.paused_until.filter(|at| *at > now) {
                // Woken early (a readable edge, or a timer kept from before the pause grew):
                // the pause must still end by itself, or the listener would wait for a close.
                self.schedule(key, Some(at));
                return;
            }
            listener.paused_until = None;
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    listener.backoff = MIN_BACKOFF;
                    self.add_accepted(key, stream, peer, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(error) => {
                    crate::trace::event!(warn, %error, pause = ?listener.backoff,
                        "accept failed: backing off");
                    let _ = error;
                    self.shared.counters.accept_error();
                    // Out of descriptors (EMFILE/ENFILE) or another failure: retrying at once
                    // would spin at 100 % CPU (asyncore did). Pause, keep serving the open
                    // connections, and retry after a growing delay or as soon as one closes.
                    let at = now + listener.backoff;
                    listener.backoff = (listener.backoff * 2).min(MAX_BACKOFF);
                    listener.paused_until = Some(at);
                    self.schedule(key, Some(at));
                    return;
                }
            }
        }
    }

    fn add_accepted(
        &mut self,
        listener_key: usize,
        stream: Incoming,
        peer: PeerAddr,
        now: Instant,
    ) {
        let key = self.slots.vacant_key();
        let id = Key {
            key,
            generation: self.next_generation.wrapping_add(1).max(1),
        };
        // Live from here: the factory (and `connected`) may hand the connection's handle on.
        self.shared.arrived(id, Role::Accepted);
        // Counted before the factory runs, as on every driver (a factory that limits the
        // connections it takes sees itself in the count).
        self.shared.counters.accepted();
        let handle = self.handle();
        let accepted = Accepted::new(handle.conn(id.id()), peer, handle.server());
        let Some(Slot {
            kind: Kind::Listener(listener),
            ..
        }) = self.slots.get_mut(listener_key)
        else {
            return;
        };
        #[cfg(feature = "tracing")]
        let peer_name = accepted.peer.to_string();
        let Some(entry) = (listener.make)(accepted, stream, now) else {
            crate::trace::event!(warn, conn = %id.id(), peer = %peer_name,
                "connection refused: the factory's protocol cannot start");
            // Counted, never silent: the factory's protocol could not start. Its id is spent:
            // a handle the factory kept must not reach the next connection in the slot.
            self.shared.left(id);
            self.shared.counters.refused();
            self.next_generation = id.generation;
            return;
        };
        crate::trace::event!(debug, conn = %id.id(), peer = %peer_name, "accepted");
        match self.add_entry(entry, true) {
            Ok(id2) => {
                debug_assert_eq!(id.id(), id2, "the slab hands out its vacant key");
            }
            Err(_) => {
                // The socket could not be registered with the poller: dropped, and counted.
                self.shared.left(id);
                self.shared.counters.refused();
                self.next_generation = id.generation;
            }
        }
    }

    fn run_commands(&mut self, now: Instant) {
        let mut pushed = std::mem::take(&mut self.pushed);
        for command in self.shared.take_commands() {
            match command {
                Command::Push(id, data, backlog) => {
                    backlog.release(data.cost());
                    match self.slots.get_mut(id.key) {
                        Some(slot) if slot.generation == id.generation => {
                            // Kept from the first push on: the loop publishes what the
                            // connection's output costs after each of its events.
                            slot.backlog.get_or_insert(backlog);
                        }
                        // Gone: so is its bound.
                        _ => self.shared.left(id),
                    }
                    if self.with_entry(id.key, Some(id.generation), now, |e, cx| {
                        e.on_push(cx, data);
                    }) {
                        pushed.push(id);
                    }
                }
                Command::CloseWhenDone(id) => self.close(id, true, now),
                Command::Close(id) => self.close(id, false, now),
                Command::CloseBecause(id, reason) => {
                    self.with_entry(id.key, Some(id.generation), now, |e, cx| {
                        e.on_close_because(cx, reason);
                    });
                }
                Command::Shutdown(deadline) => {
                    self.shutdown(now);
                    if let Some(at) = deadline.and_then(|d| now.checked_add(d)) {
                        self.shutdown_deadline =
                            Some(self.shutdown_deadline.map_or(at, |t| t.min(at)));
                    }
                }
                Command::StopAccepting => {
                    for key in self.listeners.clone() {
                        self.remove(key);
                    }
                }
                Command::Stop => {}
            }
        }
        // One write per connection for everything pushed to it this turn. Sorting, not a
        // membership check per push: a broadcast to a large room pushes to many connections.
        pushed.sort_unstable_by_key(|id| (id.key, id.generation));
        pushed.dedup();
        for id in pushed.drain(..) {
            self.with_entry(id.key, Some(id.generation), now, |e, cx| {
                e.on_ready(cx, false, false);
            });
        }
        self.pushed = pushed;
    }

    /// Runs `f` on the entry in slot `key` (of generation `generation`, if given), then keeps
    /// the loop's view of it (deadline, removal) up to date. `false` if there is no such entry.
    fn with_entry(
        &mut self,
        key: usize,
        generation: Option<u32>,
        now: Instant,
        f: impl FnOnce(&mut dyn Entry, &mut Cx<'_>),
    ) -> bool {
        match self.slots.get_mut(key) {
            Some(Slot {
                generation: g,
                kind: Kind::Entry(entry),
                ..
            }) if generation.is_none_or(|want| want == *g) => {
                let mut cx = Cx {
                    now,
                    registry: self.poll.registry(),
                    token: Token(key),
                    hangup: false,
                    yielded: false,
                };
                f(entry.as_mut(), &mut cx);
                if cx.yielded {
                    self.yielded.push((key, *g));
                }
            }
            _ => return false,
        }
        self.after(key);
        true
    }

    fn close(&mut self, id: Key, graceful: bool, now: Instant) {
        let is_listener = matches!(
            self.slots.get(id.key),
            Some(Slot { generation, kind: Kind::Listener(_), .. }) if *generation == id.generation
        );
        if is_listener {
            self.remove(id.key);
            return;
        }
        self.with_entry(id.key, Some(id.generation), now, |e, cx| {
            e.on_close(cx, graceful)
        });
    }

    fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let keys: Vec<(usize, u32)> = self.slots.iter().map(|(k, s)| (k, s.generation)).collect();
        for (key, generation) in keys {
            self.close(Key { key, generation }, true, now);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        // Take what is due first: a deadline set for "now" while firing (a protocol re-arming
        // its timer) waits for the next turn instead of keeping this one going forever.
        let mut due = std::mem::take(&mut self.due);
        let now_ticks = self.ticks.of(now);
        while let Some(&Reverse(entry)) = self.timers.peek() {
            if entry.0 > now_ticks {
                break;
            }
            self.timers.pop();
            due.push(entry);
        }
        for &(at, key, generation) in &due {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            if slot.generation != generation || slot.scheduled != at {
                continue; // stale: rescheduled or a newer occupant of the slot
            }
            slot.scheduled = Ticks::NEVER;
            if matches!(slot.kind, Kind::Listener(_)) {
                self.accept(key, now);
            } else {
                self.with_entry(key, None, now, |e, cx| e.on_timeout(cx));
            }
        }
        due.clear();
        self.due = due;
    }

    /// After an entry handled something: remove it if finished, else keep its deadline in the heap.
    fn after(&mut self, key: usize) {
        let Some(Slot {
            kind: Kind::Entry(entry),
            backlog,
            ..
        }) = self.slots.get(key)
        else {
            return;
        };
        if let (Some(backlog), Some(cost)) = (backlog, entry.queued_cost()) {
            backlog.publish(cost);
        }
        if entry.is_finished() {
            self.remove(key);
            return;
        }
        let deadline = entry.deadline();
        self.schedule(key, deadline);
    }

    /// Makes sure the heap wakes slot `key` no later than `deadline`. Only an *earlier* deadline
    /// is pushed: a later or vanished one is left to the wake-up already in the heap, which then
    /// finds nothing due and reschedules. (Pushing on every move would let an idle deadline that
    /// every read pushes back pile up one stale entry per read.)
    fn schedule(&mut self, key: usize, deadline: Option<Instant>) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let Some(deadline) = deadline else {
            return;
        };
        let d = self.ticks.of(deadline);
        if d < slot.scheduled {
            slot.scheduled = d;
            self.timers.push(Reverse((d, key, slot.generation)));
        }
    }

    fn remove(&mut self, key: usize) {
        if !self.slots.contains(key) {
            return;
        }
        let slot = self.slots.remove(key);
        self.shared.left(Key {
            key,
            generation: slot.generation,
        });
        match slot.kind {
            Kind::Listener(mut l) => {
                let _ = self.poll.registry().deregister(l.socket.source());
                self.listeners.retain(|k| *k != key);
            }
            Kind::Entry(mut entry) => {
                if slot.accepted {
                    let reason = entry.close_reason();
                    crate::trace::event!(debug, conn = %Key { key, generation: slot.generation }.id(),
                        reason = %reason.as_ref().map_or_else(String::new, ToString::to_string),
                        "closed");
                    self.shared.counters.closed(reason.as_ref());
                }
                entry.deregister(self.poll.registry());
                drop(entry);
                // A descriptor was freed: listeners paused for lack of them may accept again.
                // The pause ends outright rather than at a fresh `Instant::now()`, which lies
                // after the turn's own clock and would read as "still paused" this turn.
                let now = Instant::now();
                for k in self.listeners.clone() {
                    if let Some(Slot {
                        kind: Kind::Listener(l),
                        ..
                    }) = self.slots.get_mut(k)
                    {
                        if l.paused_until.take().is_some() {
                            self.schedule(k, Some(now));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asynchat_core::{Context, Frame, Terminator};
    use std::io::{Read, Write};

    struct Echo;
    impl Protocol for Echo {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
            ctx.push(line);
            ctx.push("\n");
        }
    }

    #[test]
    fn handles_that_outlive_their_loop_are_refused() {
        use asynchat_core::backlog::PushError;
        let event_loop = EventLoop::new().unwrap();
        let handle = event_loop.handle();
        let conn = handle.conn(asynchat_core::driver::ConnId::from_raw(1));
        drop(event_loop);
        assert_eq!(conn.push("late"), Err(PushError::Closed));
        assert_eq!(handle.shutdown(), Err(PushError::Closed));
        assert_eq!(handle.stop(), Err(PushError::Closed));
    }

    /// Re-arms its timer for "now" every time it fires.
    struct Storm {
        fired: std::rc::Rc<std::cell::Cell<u32>>,
    }
    impl Protocol for Storm {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn connected(&mut self, ctx: &mut Context<'_>) {
            ctx.set_timer(1, ctx.now());
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
        fn timeout(&mut self, ctx: &mut Context<'_>, _: asynchat_core::Timer) {
            self.fired.set(self.fired.get() + 1);
            ctx.set_timer(1, ctx.now());
        }
    }

    #[test]
    fn a_timer_rearmed_for_now_fires_once_per_turn_and_the_loop_stays_responsive() {
        let fired = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut ev = EventLoop::new().unwrap();
        let f = fired.clone();
        let bound = ev
            .listen("127.0.0.1:0".parse().unwrap(), move |_| Storm {
                fired: f.clone(),
            })
            .unwrap();
        let _client = std::net::TcpStream::connect(bound.addr).unwrap();
        for _ in 0..20 {
            ev.run_once(Some(Duration::from_millis(10))).unwrap();
        }
        let n = fired.get();
        assert!((1..=20).contains(&n), "fired {n} times in 20 turns");
    }

    #[test]
    fn deadlines_that_keep_moving_do_not_pile_up_in_the_heap() {
        let config = Config::default().idle_timeout(Some(Duration::from_secs(300)));
        let mut ev = EventLoop::with_config(config).unwrap();
        let bound = ev.listen("127.0.0.1:0".parse().unwrap(), |_| Echo).unwrap();
        let mut client = std::net::TcpStream::connect(bound.addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for i in 0..500 {
            client.write_all(format!("{i}\n").as_bytes()).unwrap();
            let want = format!("{i}\n");
            let mut got = vec![0; want.len()];
            let mut read = 0;
            while read < got.len() {
                ev.run_once(Some(Duration::from_millis(10))).unwrap();
                client.set_nonblocking(true).unwrap();
                if let Ok(n) = client.read(&mut got[read..]) {
                    read += n;
                }
                client.set_nonblocking(false).unwrap();
            }
            assert_eq!(got, want.as_bytes());
        }
        // Each read moved the idle deadline later; the heap holds a wake-up or two, not 500.
        assert!(ev.timers.len() <= 3, "{} heap entries", ev.timers.len());
    }

    #[test]
    fn ticks_keep_the_order_of_instants_and_come_back_as_the_same_instant() {
        let ticks = Ticks::starting_now();
        let at = ticks.epoch + Duration::from_millis(1500);
        let later = at + Duration::from_nanos(1);
        assert!(ticks.of(at) < ticks.of(later));
        assert_eq!(ticks.instant(ticks.of(at)), Some(at));
        // Before the loop was made: its start, which is already past.
        let before = ticks.epoch.checked_sub(Duration::from_secs(1));
        if let Some(before) = before {
            assert_eq!(ticks.of(before), 0);
        }
        // No deadline is later than every deadline there can be.
        assert!(ticks.of(ticks.epoch + Duration::from_secs(u64::from(u32::MAX))) < Ticks::NEVER);
    }

    #[test]
    fn an_earlier_deadline_is_scheduled_and_a_later_one_left_to_the_wake_up_in_the_heap() {
        let mut ev = EventLoop::new().unwrap();
        ev.listen("127.0.0.1:0".parse().unwrap(), |_| Echo).unwrap();
        let key = ev.listeners[0];
        let now = Instant::now();
        ev.schedule(key, Some(now + Duration::from_secs(10)));
        ev.schedule(key, Some(now + Duration::from_secs(20)));
        assert_eq!(ev.timers.len(), 1, "a later deadline pushes nothing");
        ev.schedule(key, Some(now + Duration::from_secs(5)));
        assert_eq!(ev.timers.len(), 2);
        let next = ev.next_deadline().unwrap();
        assert_eq!(next, now + Duration::from_secs(5));
    }
}
