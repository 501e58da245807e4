//! Driving a [`Chat`] from a poll-based runtime: the loop every async driver needs (tokio, smol,
//! any `futures-io` stream), written once. A driver adapts its stream, its timer and its command
//! channel to the three small traits here and calls [`poll_chat`] from its task.
//!
//! Nothing here performs I/O or reads a clock by itself: the adapters do, when polled (the time
//! comes from [`PollTimer::now`]).

use std::io::{self, IoSlice};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::chat::{Chat, Protocol};

/// A non-blocking byte stream, as a runtime's async I/O traits see it.
pub trait PollStream {
    /// Reads into the spare capacity of `buf`, appending; `Ok(0)` is the end of the stream.
    fn poll_read_into(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>>;
    /// Writes from `bufs` (a vectored write where the stream supports it).
    fn poll_write_vectored(
        &mut self,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    /// Ends the write side (FIN), after a graceful close.
    fn poll_shutdown(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>>;

    /// Called after a read that returned data. A stream that knows it is drained (its last
    /// read returned less than it asked for: a stream socket hands over all it holds) and can
    /// have its runtime wake the task at the next readiness without reading (async-io's
    /// `poll_readable`) does so and returns `Some`: [`poll_chat`] then skips the read that
    /// would only find nothing, a system call per wake-up. The default, `None`, has
    /// `poll_chat` read until `Pending`.
    fn poll_read_ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Poll<io::Result<()>>> {
        let _ = cx;
        None
    }
}

/// A timer that can be moved to a new instant, and the runtime's clock.
pub trait PollTimer {
    /// The time now, by the runtime's clock.
    fn now(&self) -> Instant;
    /// Completes once `at` has passed; the timer is moved to `at` if it was set for another time.
    fn poll_until(&mut self, cx: &mut TaskContext<'_>, at: Instant) -> Poll<()>;
}

/// What a handle can ask of a connection, from another task or thread.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Queue bytes, as the protocol's `ctx.push` would.
    Push(Bytes),
    /// Flush, then close.
    CloseWhenDone,
    /// Close now, dropping queued output.
    Close,
}

/// The receiving end of a connection's command channel.
pub trait PollCommands {
    /// The next command; `Ready(None)` once every sender is gone.
    fn poll_command(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Command>>;
}

/// A command source that never has anything: for connections nobody else reaches.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCommands;

impl PollCommands for NoCommands {
    fn poll_command(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Option<Command>> {
        Poll::Ready(None)
    }
}

/// Moves everything that can move — commands, output, input, deadlines — and returns
/// `Ready(())` once the chat is closed (the caller then shuts the write side down if the close
/// [`is_graceful`](crate::CloseReason::is_graceful)), `Pending` once every source it polled has
/// registered the task's waker.
///
/// Deadlines fire at most once per call: a timer a protocol re-arms for "now" makes the task
/// yield (it wakes itself) instead of spinning. `commands_open` tracks whether the command
/// source can still produce anything; start with `true`.
pub fn poll_chat<P, S, T, C>(
    chat: &mut Chat<P>,
    io: &mut S,
    timer: &mut T,
    commands: &mut C,
    commands_open: &mut bool,
    cx: &mut TaskContext<'_>,
) -> Poll<()>
where
    P: Protocol,
    S: PollStream + ?Sized,
    T: PollTimer + ?Sized,
    C: PollCommands + ?Sized,
{
    let mut timers_fired = false;
    // Once a source said `Pending`, the task's waker is registered with it: polling it again
    // in this call would only repeat work that fails (a system call, for a stream: some
    // runtimes, async-io among them, do not remember that the socket was drained; a lock, for
    // the command mailbox).
    let (mut read_blocked, mut write_blocked, mut commands_blocked) = (false, false, false);
    // One reading of the clock per wake-up (and per deadline fired): callbacks share it.
    let mut now = timer.now();
    let poll = loop {
        if chat.is_closed() {
            break Poll::Ready(());
        }
        let mut progress = false;
        while *commands_open && !commands_blocked {
            match commands.poll_command(cx) {
                Poll::Ready(Some(Command::Push(data))) => {
                    chat.with_context(now, |_, ctx| ctx.push(data));
                }
                Poll::Ready(Some(Command::CloseWhenDone)) => chat.close_when_done(),
                Poll::Ready(Some(Command::Close)) => chat.close(),
                Poll::Ready(None) => *commands_open = false,
                Poll::Pending => {
                    commands_blocked = true;
                    break;
                }
            }
            progress = true;
        }
        // Reading first: what it queues is written in the same turn. The read buffer is kept
        // until this call returns, so the read that finds nothing reuses it.
        if chat.interest().readable && !read_blocked {
            let read = chat.handle_read_kept(now, |buf| io.poll_read_into(cx, buf));
            progress |= matches!(read, Some(Poll::Ready(_)));
            read_blocked = matches!(read, Some(Poll::Pending));
            match read {
                Some(Poll::Ready(Ok(0))) => chat.handle_eof(now),
                Some(Poll::Ready(Ok(_))) => {
                    read_blocked = matches!(io.poll_read_ready(cx), Some(Poll::Pending));
                }
                Some(Poll::Ready(Err(e))) if e.kind() != io::ErrorKind::Interrupted => {
                    chat.handle_error(e);
                }
                _ => {}
            }
        }
        if chat.interest().writable && !write_blocked {
            let written = chat.transmit_with(|slices| io.poll_write_vectored(cx, slices));
            progress |= matches!(written, Some(Poll::Ready(_)));
            match written {
                Some(Poll::Ready(Ok(0))) => chat.handle_error(io::ErrorKind::WriteZero.into()),
                Some(Poll::Ready(Ok(n))) => chat.handle_written(n),
                Some(Poll::Ready(Err(e))) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Poll::Ready(Err(e))) => chat.handle_error(e),
                Some(Poll::Pending) => write_blocked = true,
                // Only producers with nothing to give yet: nothing was tried. Or the last one
                // ran out, which ends a closing connection: go round to see it closed.
                None => progress |= chat.is_closed(),
            }
        }
        match deadline(timer, cx, chat.poll_timeout(), &mut timers_fired) {
            Deadline::Due => {
                now = timer.now();
                chat.handle_timeout(now);
                progress = true;
            }
            Deadline::Yield => break Poll::Pending,
            Deadline::NotYet => {}
        }
        if !progress {
            break Poll::Pending;
        }
    };
    // An idle connection holds no read buffer.
    chat.release_read_buffer();
    poll
}

/// What a task should do about its next deadline.
enum Deadline {
    NotYet,
    /// It has passed: fire.
    Due,
    /// It has passed again within the same poll (a timer re-armed for "now"): the task has
    /// woken itself and should return `Pending`, so it yields instead of spinning.
    Yield,
}

/// Polls the timer for `at`; deadlines fire at most once per poll (`fired` tracks it).
fn deadline<T: PollTimer + ?Sized>(
    timer: &mut T,
    cx: &mut TaskContext<'_>,
    at: Option<Instant>,
    fired: &mut bool,
) -> Deadline {
    let Some(at) = at else {
        return Deadline::NotYet;
    };
    if timer.poll_until(cx, at).is_pending() {
        return Deadline::NotYet;
    }
    if *fired {
        cx.waker().wake_by_ref();
        return Deadline::Yield;
    }
    *fired = true;
    Deadline::Due
}

/// A connection's whole task: connects the chat if it is still connecting (the stream is),
/// runs [`poll_chat`] until the chat closes, and after a graceful close shuts the write side
/// down and drains the peer's input for at most [`LINGER`]; then runs `on_end` (a driver
/// unregisters the connection there).
pub async fn run_chat<P, S, T, C>(
    mut chat: Chat<P>,
    mut io: S,
    mut timer: T,
    mut commands: C,
    on_end: impl FnOnce(),
) where
    P: Protocol,
    S: PollStream,
    T: PollTimer,
    C: PollCommands,
{
    if chat.state() == crate::State::Connecting {
        chat.handle_connected(timer.now());
    }
    let mut open = true;
    std::future::poll_fn(|cx| {
        poll_chat(&mut chat, &mut io, &mut timer, &mut commands, &mut open, cx)
    })
    .await;
    if chat
        .close_reason()
        .is_some_and(crate::CloseReason::is_graceful)
    {
        let _ = std::future::poll_fn(|cx| io.poll_shutdown(cx)).await;
        linger(&mut io, &mut timer).await;
    }
    on_end();
}

/// How long a graceful close drains the peer's input after shutting the write side down.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards until the peer closes (or fails), for at most [`LINGER`]: unread input at
/// close makes the kernel reset the connection, which can destroy the reply still in flight
/// (Apache's "lingering close").
async fn linger<S: PollStream, T: PollTimer>(io: &mut S, timer: &mut T) {
    let until = timer.now() + LINGER;
    let mut scratch = BytesMut::new();
    std::future::poll_fn(|cx| loop {
        scratch.clear();
        scratch.reserve(16 * 1024);
        match io.poll_read_into(cx, &mut scratch) {
            Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(_)) => continue,
            Poll::Pending => {}
        }
        return timer.poll_until(cx, until);
    })
    .await;
}

/// A non-blocking datagram socket, as a runtime's async UDP socket sees it.
pub trait PollDatagram {
    /// Sends `payload` to `peer`.
    fn poll_send_to(
        &mut self,
        cx: &mut TaskContext<'_>,
        payload: &[u8],
        peer: std::net::SocketAddr,
    ) -> Poll<io::Result<usize>>;
    /// Receives one datagram into `buf`.
    fn poll_recv_from(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, std::net::SocketAddr)>>;
}

/// Receive errors tolerated in one poll (each pending ICMP error is reported once).
const MAX_RECV_ERRORS: u32 = 16;

/// A UDP endpoint's whole task: runs `chat` on `socket` until the protocol closes it. A send
/// that fails loses that datagram only, as UDP may; deadlines fire at most once per poll.
pub async fn run_datagram_chat<P, S, T>(
    mut chat: crate::DatagramChat<P>,
    mut socket: S,
    mut timer: T,
) where
    P: crate::DatagramProtocol,
    S: PollDatagram,
    T: PollTimer,
{
    let mut buf = vec![0u8; 64 * 1024];
    std::future::poll_fn(|cx| {
        let mut errors = 0;
        let mut timers_fired = false;
        loop {
            if chat.is_closed() {
                return Poll::Ready(());
            }
            let now = timer.now();
            let mut progress = false;
            while let Some(d) = chat.poll_transmit() {
                match socket.poll_send_to(cx, &d.payload, d.peer) {
                    Poll::Ready(_) => {
                        chat.handle_sent();
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            if chat.interest().readable {
                match socket.poll_recv_from(cx, &mut buf) {
                    Poll::Ready(Ok((n, peer))) => {
                        chat.handle_datagram(now, peer, Bytes::copy_from_slice(&buf[..n]));
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => {
                        errors += 1;
                        if errors == MAX_RECV_ERRORS {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            match deadline(&mut timer, cx, chat.poll_timeout(), &mut timers_fired) {
                Deadline::Due => {
                    chat.handle_timeout(timer.now());
                    progress = true;
                }
                Deadline::Yield => return Poll::Pending,
                Deadline::NotYet => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
}

/// A new connection, as seen by the protocol factory of an async driver's server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Accepted {
    /// The connection's id, for [`Handle`] commands.
    pub id: ConnId,
    /// The peer's address.
    pub peer: std::net::SocketAddr,
    /// A handle on the server's connections.
    pub handle: Handle,
}

impl Accepted {
    /// A new connection's description (driver side).
    #[must_use]
    pub fn new(id: ConnId, peer: std::net::SocketAddr, handle: Handle) -> Self {
        Self { id, peer, handle }
    }
}

/// Connection ids and their command senders: the shared state behind a driver's handle.
///
/// Ids are never reused, so a handle kept after its connection closed cannot reach a newer one.
pub struct Registry<T> {
    next: std::sync::atomic::AtomicU64,
    conns: std::sync::Mutex<std::collections::HashMap<u64, T>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            next: std::sync::atomic::AtomicU64::new(0),
            conns: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl<T> std::fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("connections", &self.len())
            .finish()
    }
}

impl<T> Registry<T> {
    fn conns(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, T>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a connection's sender; returns its new id.
    pub fn insert(&self, sender: T) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.conns().insert(id, sender);
        id
    }

    /// Forgets connection `id` (it has closed).
    pub fn remove(&self, id: u64) {
        self.conns().remove(&id);
    }

    /// Runs `f` on the sender of connection `id`, if it is still there.
    pub fn with<R>(&self, id: u64, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.conns().get(&id).map(f)
    }

    /// Runs `f` on every sender.
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        self.conns().values().for_each(&mut f);
    }

    /// Connections registered now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.conns().len()
    }

    /// Whether no connection is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's command mailbox: what a driver's handle sends through. Nothing is allocated
/// until a command is sent (an idle connection should cost next to nothing), and it works with
/// any runtime (a plain mutex and the task's waker).
///
/// ```
/// use asynchat_core::driver::{mailbox, Command};
///
/// let (tx, _rx) = mailbox();
/// assert!(tx.send(Command::Close));
/// ```
#[must_use]
pub fn mailbox() -> (MailboxSender, MailboxReceiver) {
    let shared = std::sync::Arc::new(Shared::default());
    (
        MailboxSender(shared.clone()),
        MailboxReceiver {
            shared,
            registered: None,
        },
    )
}

#[derive(Debug, Default)]
struct MailboxState {
    queue: std::collections::VecDeque<Command>,
    waker: Option<std::task::Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

#[derive(Debug, Default)]
struct Shared {
    /// Set (under the lock) whenever a sender queues a command, goes away, or takes the waker;
    /// cleared (under the lock) when the receiver registers its waker with nothing queued.
    /// While it is clear, polling could only find what the last poll found: the receiver
    /// answers `Pending` without taking the lock, once per wake-up of every connection.
    news: std::sync::atomic::AtomicBool,
    state: std::sync::Mutex<MailboxState>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, MailboxState> {
        // A panic elsewhere while holding the lock leaves a queue that is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the registered waker and tells the receiver to look (called with the lock held).
    fn notify(&self, state: &mut MailboxState) -> Option<std::task::Waker> {
        self.news.store(true, std::sync::atomic::Ordering::Release);
        state.waker.take()
    }
}

/// The sending end of a [`mailbox`]; dropping it ends the receiver's stream of commands.
#[derive(Debug)]
pub struct MailboxSender(std::sync::Arc<Shared>);

impl MailboxSender {
    /// Queues `command` and wakes the connection's task; `false` if the connection is gone.
    pub fn send(&self, command: Command) -> bool {
        let waker = {
            let mut state = self.0.lock();
            if state.receiver_gone {
                return false;
            }
            state.queue.push_back(command);
            self.0.notify(&mut state)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }
}

impl Drop for MailboxSender {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock();
            state.sender_gone = true;
            self.0.notify(&mut state)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The receiving end of a [`mailbox`], polled by the connection's task.
#[derive(Debug)]
pub struct MailboxReceiver {
    shared: std::sync::Arc<Shared>,
    /// The waker last registered with the mailbox, to know without the lock that it is still
    /// the task's.
    registered: Option<std::task::Waker>,
}

impl PollCommands for MailboxReceiver {
    fn poll_command(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Command>> {
        let quiet = !self.shared.news.load(std::sync::atomic::Ordering::Acquire);
        if quiet
            && self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let mut state = self.shared.lock();
        if let Some(command) = state.queue.pop_front() {
            if state.queue.is_empty() {
                state.queue = std::collections::VecDeque::new();
            }
            return Poll::Ready(Some(command));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        let current = state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if !current {
            state.waker = Some(cx.waker().clone());
        }
        if !self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.registered = Some(cx.waker().clone());
        }
        self.shared
            .news
            .store(false, std::sync::atomic::Ordering::Release);
        Poll::Pending
    }
}

impl Drop for MailboxReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        state.queue = std::collections::VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::time::Instant;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// An in-memory stream: reads from `input` (then `Pending`), writes into `output`.
    #[derive(Default)]
    struct Memory {
        input: Vec<u8>,
        output: Vec<u8>,
        shut: bool,
        /// The capacity of the buffer each read that found nothing was given.
        empty_reads: Vec<usize>,
    }

    impl PollStream for Memory {
        fn poll_read_into(
            &mut self,
            _: &mut TaskContext<'_>,
            buf: &mut BytesMut,
        ) -> Poll<io::Result<usize>> {
            if self.input.is_empty() {
                self.empty_reads.push(buf.capacity());
                return Poll::Pending;
            }
            buf.extend_from_slice(&self.input);
            Poll::Ready(Ok(std::mem::take(&mut self.input).len()))
        }
        fn poll_write_vectored(
            &mut self,
            _: &mut TaskContext<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let before = self.output.len();
            for b in bufs {
                self.output.extend_from_slice(b);
            }
            Poll::Ready(Ok(self.output.len() - before))
        }
        fn poll_shutdown(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// A clock stopped at `now`; any deadline at or before it has passed.
    struct Frozen(Instant);

    impl PollTimer for Frozen {
        fn now(&self) -> Instant {
            self.0
        }
        fn poll_until(&mut self, _: &mut TaskContext<'_>, at: Instant) -> Poll<()> {
            if at <= self.0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    /// Echoes lines, and re-arms a timer for "now" every time it fires.
    struct StormEcho(u32);

    impl crate::Protocol for StormEcho {
        fn first_terminator(&self) -> crate::Terminator {
            "\n".into()
        }
        fn connected(&mut self, ctx: &mut crate::Context<'_>) {
            ctx.set_timer(1, ctx.now());
        }
        fn found_terminator(&mut self, ctx: &mut crate::Context<'_>, line: Bytes) {
            ctx.push(line);
            ctx.push("\n");
        }
        fn timeout(&mut self, ctx: &mut crate::Context<'_>, _: crate::Timer) {
            self.0 += 1;
            ctx.set_timer(1, ctx.now());
        }
    }

    /// A chat connected at `now`, and a stream holding `input` for it.
    fn connected<P: crate::Protocol>(protocol: P, now: Instant, input: &[u8]) -> (Chat<P>, Memory) {
        let mut chat = Chat::new(protocol).unwrap();
        chat.handle_connected(now);
        let io = Memory {
            input: input.to_vec(),
            ..Memory::default()
        };
        (chat, io)
    }

    /// One `poll_chat` over `io`, with a frozen clock and no commands.
    fn poll_once<P: crate::Protocol>(
        chat: &mut Chat<P>,
        io: &mut Memory,
        now: Instant,
        open: &mut bool,
        cx: &mut TaskContext<'_>,
    ) -> Poll<()> {
        poll_chat(chat, io, &mut Frozen(now), &mut NoCommands, open, cx)
    }

    #[test]
    fn poll_chat_moves_bytes_and_fires_a_storming_timer_once_per_poll() {
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let now = Instant::now();
        let (mut chat, mut io) = connected(StormEcho(0), now, b"a\nb\n");
        let mut open = true;
        let poll = poll_once(&mut chat, &mut io, now, &mut open, &mut cx);
        assert_eq!(poll, Poll::Pending);
        assert_eq!(io.output, b"a\nb\n");
        assert_eq!(chat.protocol().0, 1, "the timer fired once in this poll");
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            1,
            "and the task woke itself to continue"
        );
        assert!(!open, "NoCommands ends at once");
        let _ = poll_once(&mut chat, &mut io, now, &mut open, &mut cx);
        assert_eq!(chat.protocol().0, 2);
    }

    #[test]
    fn poll_chat_leaves_an_idle_chat_without_a_read_buffer() {
        struct Echo;
        impl crate::Protocol for Echo {
            fn first_terminator(&self) -> crate::Terminator {
                "\n".into()
            }
            fn found_terminator(&mut self, ctx: &mut crate::Context<'_>, line: Bytes) {
                ctx.push(line);
            }
        }
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = TaskContext::from_waker(&waker);
        let now = Instant::now();
        let (mut chat, mut io) = connected(Echo, now, b"a\nb\n");
        let mut open = true;
        let poll = poll_once(&mut chat, &mut io, now, &mut open, &mut cx);
        assert_eq!(poll, Poll::Pending);
        assert_eq!(io.output, b"ab");
        assert_eq!(io.empty_reads.len(), 1, "one read found nothing");
        assert!(io.empty_reads[0] > 0, "it was given room to read into");
        assert_eq!(chat.read_buffer_capacity(), 0, "an idle chat holds none");
    }

    #[test]
    fn mailbox_delivers_in_order_wakes_and_ends() {
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let (tx, mut rx) = mailbox();
        assert_eq!(rx.poll_command(&mut cx), Poll::Pending);
        assert!(tx.send(Command::Push(Bytes::from_static(b"a"))));
        assert!(tx.send(Command::Close));
        assert_eq!(woken.0.load(Ordering::SeqCst), 1, "woken by the first send");
        assert_eq!(
            rx.poll_command(&mut cx),
            Poll::Ready(Some(Command::Push(Bytes::from_static(b"a"))))
        );
        assert_eq!(rx.poll_command(&mut cx), Poll::Ready(Some(Command::Close)));
        assert_eq!(rx.poll_command(&mut cx), Poll::Pending);
        drop(tx);
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            2,
            "woken when the sender goes"
        );
        assert_eq!(rx.poll_command(&mut cx), Poll::Ready(None));

        let (tx, rx) = mailbox();
        drop(rx);
        assert!(!tx.send(Command::Close), "nobody to receive");
    }

    #[test]
    fn a_quiet_mailbox_still_takes_the_tasks_new_waker() {
        let (first, second) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (waker_1, waker_2) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let (tx, mut rx) = mailbox();
        let polls = 3;
        for _ in 0..polls {
            // Quiet after the first: answered without the lock.
            assert_eq!(
                rx.poll_command(&mut TaskContext::from_waker(&waker_1)),
                Poll::Pending
            );
        }
        // The task moved (another executor, another waker): the mailbox must learn it.
        assert_eq!(
            rx.poll_command(&mut TaskContext::from_waker(&waker_2)),
            Poll::Pending
        );
        assert!(tx.send(Command::Close));
        assert_eq!(second.0.load(Ordering::SeqCst), 1, "the new waker is woken");
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "the old one is not");
    }

    #[test]
    fn commands_sent_from_other_threads_all_arrive_in_order_with_a_wake_for_each_wait() {
        // A receiver that waits for wakes, as a task would, against senders on other threads:
        // a command queued while the receiver goes quiet must still wake it.
        let (tx, mut rx) = mailbox();
        let senders = 4;
        let per_sender = 2_000u32;
        let tx = Arc::new(tx);
        let threads: Vec<_> = (0..senders)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..per_sender {
                        let tag = format!("{t}:{i}");
                        assert!(tx.send(Command::Push(Bytes::from(tag))));
                    }
                })
            })
            .collect();
        let wake = Arc::new(Unpark(std::thread::current(), AtomicUsize::new(0)));
        let waker = Waker::from(wake.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let mut next = vec![0u32; senders];
        let mut received = 0;
        while received < senders as u32 * per_sender {
            // Counted before the poll: a wake between the poll and the wait is not missed.
            let wakes = wake.1.load(Ordering::SeqCst);
            match rx.poll_command(&mut cx) {
                Poll::Ready(Some(Command::Push(data))) => {
                    let tag = std::str::from_utf8(&data).unwrap();
                    let (t, i) = tag.split_once(':').unwrap();
                    let (t, i): (usize, u32) = (t.parse().unwrap(), i.parse().unwrap());
                    assert_eq!(i, next[t], "sender {t}'s commands in order");
                    next[t] += 1;
                    received += 1;
                }
                Poll::Ready(other) => panic!("unexpected {other:?}"),
                Poll::Pending => {
                    // Pending registered the waker: a command queued since wakes us. A lost
                    // wake-up shows as a wait that only the timeout ends.
                    let waited = Instant::now();
                    while wake.1.load(Ordering::SeqCst) == wakes {
                        assert!(
                            waited.elapsed() < std::time::Duration::from_secs(5),
                            "a wake-up was lost after {received} commands"
                        );
                        std::thread::park_timeout(std::time::Duration::from_millis(100));
                    }
                }
            }
        }
        for thread in threads {
            thread.join().unwrap();
        }
    }

    /// Unparks a thread and counts the wakes.
    struct Unpark(std::thread::Thread, AtomicUsize);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.unpark();
        }
    }
}

/// Names one connection of a [`Handle`]'s server. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

/// A `Send + Clone` handle on the connections of an async driver's server: push bytes to one,
/// close it, or shut them all down gracefully, from any task or thread.
///
/// Drivers [`register`](Self::register) each connection as it starts (its task polls the
/// returned receiver through [`poll_chat`]) and [`unregister`](Self::unregister) it when it ends.
#[derive(Clone, Default)]
pub struct Handle {
    registry: std::sync::Arc<Registry<MailboxSender>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("connections", &self.connections())
            .finish()
    }
}

impl Handle {
    /// A handle with no connections yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a connection (driver side): its id, and the mailbox its task polls.
    #[must_use]
    pub fn register(&self) -> (ConnId, MailboxReceiver) {
        let (tx, rx) = mailbox();
        (ConnId(self.registry.insert(tx)), rx)
    }

    /// Forgets a connection that has ended (driver side).
    pub fn unregister(&self, id: ConnId) {
        self.registry.remove(id.0);
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
