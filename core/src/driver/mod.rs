//! Driving a [`Chat`] from a poll-based runtime: the loop every async driver needs (tokio, smol,
//! any `futures-io` stream), written once. A driver adapts its stream, its timer and its command
//! channel to the three small traits here and calls [`poll_chat`] from its task.
//!
//! Nothing here performs I/O or reads a clock by itself: the adapters do, when polled (the time
//! comes from [`PollTimer::now`]).

use std::future::Future;
use std::io::{self, IoSlice};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::backlog::{push_cost, Backlog, PushError};
use crate::chat::{Chat, CloseReason, Protocol};
use crate::producer::Producer;

pub mod client;
pub mod handle;
pub mod reply;
pub mod serve;
pub mod server;

pub use crate::pool::read_initialized;
pub use client::{outside_server, Connection};
pub use handle::{CommandSink, ConnHandle, ConnId};
pub use serve::{
    accept_loop, PeerAddr, PollAccept, Runtime, Server, Task, MAX_ACCEPT_BACKOFF,
    MIN_ACCEPT_BACKOFF,
};
pub use server::{
    wind_down, ClosedStats, Counters, ServerControl, ServerHandle, ServerStats, Signal,
    DEFAULT_SHUTDOWN_DEADLINE,
};

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

    /// Writes out what the stream itself still holds once the chat has nothing more to write
    /// (a TLS layer's records, encrypted from bytes it already took): `Ready(Ok(()))` when it
    /// holds nothing. [`poll_chat`] calls it whenever the chat's output is empty, so that
    /// nothing waits for the next push. The default holds nothing.
    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }

    /// Puts TLS in place over the stream, for a chat that asked for it in band
    /// ([`Chat::wants_tls`], STARTTLS): everything read and written from now on goes through
    /// it. The default cannot, and says so with an error of kind `Unsupported`, which closes
    /// the connection. `tls::StartTls` (feature `rustls`) can. `now` is the driver's clock, from
    /// which the stream times the handshake it then runs (see [`deadline`](Self::deadline)).
    fn start_tls(&mut self, now: Instant) -> io::Result<()> {
        let _ = now;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "STARTTLS: this connection has no TLS configuration",
        ))
    }

    /// When the stream must hear of the time at the latest: the deadline of something it runs
    /// itself, such as the handshake after a switch to TLS in band. [`poll_chat`] waits for it
    /// as for the chat's own deadlines, then calls [`handle_deadline`](Self::handle_deadline).
    /// The default has none.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The time is `now`, at or past [`deadline`](Self::deadline): an error (a handshake that
    /// took too long) closes the connection.
    fn handle_deadline(&mut self, now: Instant) -> io::Result<()> {
        let _ = now;
        Ok(())
    }
}

/// A timer that can be moved to a new instant, and the runtime's clock.
pub trait PollTimer {
    /// The time now, by the runtime's clock.
    fn now(&self) -> Instant;
    /// Completes once `at` has passed; the timer is moved to `at` if it was set for another time.
    fn poll_until(&mut self, cx: &mut TaskContext<'_>, at: Instant) -> Poll<()>;

    /// The task used up its turn with work left: have the runtime poll it again after it has
    /// served the other tasks *and* looked for new I/O. The default wakes the task at once,
    /// which puts it behind the tasks already queued; a runtime that polls its I/O driver only
    /// when its run queue empties (tokio) must defer the wake-up instead, or the tasks that
    /// yield keep new readiness from being seen.
    fn yield_turn(&mut self, cx: &mut TaskContext<'_>) {
        cx.waker().wake_by_ref();
    }
}

/// What a handle can ask of a connection, from another task or thread.
#[non_exhaustive]
pub enum Command {
    /// Queue bytes, as the protocol's `ctx.push` would.
    Push(Bytes),
    /// Queue a producer, as the protocol's `ctx.push_producer` would.
    PushProducer(Box<dyn Producer + Send>),
    /// Flush, then close.
    CloseWhenDone,
    /// Close now, dropping queued output.
    Close,
    /// Close now for this reason, dropping queued output (a slow receiver dropped by its
    /// sender, say: [`CloseReason::Error`] with [`Error::OutboxFull`](crate::Error::OutboxFull)).
    CloseBecause(CloseReason),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Push(data) => f.debug_tuple("Push").field(data).finish(),
            Self::PushProducer(_) => f.write_str("PushProducer(..)"),
            Self::CloseWhenDone => f.write_str("CloseWhenDone"),
            Self::Close => f.write_str("Close"),
            Self::CloseBecause(reason) => f.debug_tuple("CloseBecause").field(reason).finish(),
        }
    }
}

impl PartialEq for Command {
    /// Producers compare by identity (the same boxed producer), everything else by value.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Push(a), Self::Push(b)) => a == b,
            (Self::PushProducer(a), Self::PushProducer(b)) => {
                std::ptr::addr_eq(&**a as *const _, &**b as *const _)
            }
            (Self::CloseWhenDone, Self::CloseWhenDone) | (Self::Close, Self::Close) => true,
            (Self::CloseBecause(a), Self::CloseBecause(b)) => a == b,
            _ => false,
        }
    }
}

impl Command {
    /// What the command counts against its connection's backlog while in flight.
    fn cost(&self) -> usize {
        match self {
            Self::Push(data) => push_cost(data.len()),
            // Its bytes are counted as the outbox pulls them.
            Self::PushProducer(_) => push_cost(0),
            _ => 0,
        }
    }
}

/// The receiving end of a connection's command channel.
pub trait PollCommands {
    /// The next command; `Ready(None)` once every sender is gone.
    fn poll_command(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Command>>;

    /// What the connection's output costs now ([`Chat::queued_cost`]), for senders that must
    /// not push beyond its backlog limit ([`Backlog`]). The default ignores it.
    fn publish_queued(&mut self, cost: usize) {
        let _ = cost;
    }
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
/// Fairness: one call reads at most [`Chat::turn_budget`] bytes and writes at most as many.
/// A connection with more to do then asks to be polled again ([`PollTimer::yield_turn`]) and
/// returns `Pending`, so the runtime serves the other tasks before this one resumes (a peer
/// that pipelines without pause cannot hold the thread). Deadlines fire at most once per call: a timer a protocol re-arms for "now"
/// makes the task yield the same way instead of spinning. `commands_open` tracks whether the
/// command source can still produce anything; start with `true`.
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
    let budget = chat.turn_budget();
    let (mut read_total, mut written_total) = (0usize, 0usize);
    // One reading of the clock per wake-up (and per deadline fired): callbacks share it.
    let mut now = timer.now();
    let poll = loop {
        if chat.is_closed() {
            break Poll::Ready(());
        }
        let mut progress = false;
        // Not once the chat is closed: what is left (a shutdown's `Close`, say) is for the
        // lingering close that follows, which it ends.
        while *commands_open && !commands_blocked && !chat.is_closed() {
            match commands.poll_command(cx) {
                Poll::Ready(Some(command)) => {
                    apply(chat, now, command);
                    commands.publish_queued(chat.queued_cost());
                }
                Poll::Ready(None) => *commands_open = false,
                Poll::Pending => {
                    commands_blocked = true;
                    break;
                }
            }
            progress = true;
        }
        let may_read = read_total < budget;
        let may_write = written_total < budget;
        let mut nothing_to_write = false;
        // Reading first: what it queues is written in the same turn. The read buffer is kept
        // until this call returns, so the read that finds nothing reuses it.
        if chat.interest().readable && !read_blocked && may_read {
            let read = chat.handle_read_kept(now, |buf| io.poll_read_into(cx, buf));
            progress |= matches!(read, Some(Poll::Ready(_)));
            read_blocked = matches!(read, Some(Poll::Pending));
            match read {
                Some(Poll::Ready(Ok(0))) => chat.handle_eof(now),
                Some(Poll::Ready(Ok(n))) => {
                    read_total += n;
                    read_blocked = matches!(io.poll_read_ready(cx), Some(Poll::Pending));
                }
                Some(Poll::Ready(Err(e))) if e.kind() != io::ErrorKind::Interrupted => {
                    chat.handle_error(e);
                }
                _ => {}
            }
        }
        if chat.interest().writable && !write_blocked && may_write {
            let written = chat.transmit_with(|slices| io.poll_write_vectored(cx, slices));
            progress |= matches!(written, Some(Poll::Ready(_)));
            match written {
                Some(Poll::Ready(Ok(0))) => chat.handle_error(io::ErrorKind::WriteZero.into()),
                Some(Poll::Ready(Ok(n))) => {
                    written_total += n;
                    chat.handle_written(n);
                }
                Some(Poll::Ready(Err(e))) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Poll::Ready(Err(e))) => chat.handle_error(e),
                Some(Poll::Pending) => write_blocked = true,
                // Only producers with nothing to give yet: nothing was tried. Or the last one
                // ran out, which ends a closing connection: go round to see it closed.
                None => {
                    progress |= chat.is_closed();
                    nothing_to_write = true;
                }
            }
        }
        // What the stream holds itself (TLS records) goes out whenever the chat has nothing
        // to write now, a producer waiting for more included.
        let flush = !chat.interest().writable || nothing_to_write;
        if flush && !write_blocked && !chat.is_closed() {
            match io.poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => chat.handle_error(e),
                Poll::Pending => write_blocked = true,
            }
            if chat.wants_tls() && !write_blocked {
                match io.start_tls(now) {
                    Ok(()) => chat.handle_tls_started(now),
                    Err(e) => chat.handle_error(e),
                }
                progress = true;
            }
        }
        let mut fired = false;
        let next = [chat.poll_timeout(), io.deadline()]
            .into_iter()
            .flatten()
            .min();
        match deadline(timer, cx, next, &mut timers_fired) {
            Deadline::Due => {
                now = timer.now();
                chat.handle_timeout(now);
                if let Err(e) = io.handle_deadline(now) {
                    chat.handle_error(e);
                }
                fired = true;
            }
            Deadline::Yield => break Poll::Pending,
            Deadline::NotYet => {}
        }
        if chat.is_closed() {
            break Poll::Ready(());
        }
        // Round again only if something moved and something may still move: a source that
        // said `Pending` has registered the waker, and a stream that knows it is drained said
        // so (`poll_read_ready`), so the round that would only find that out is spared. A
        // deadline just fired is polled again, so that the timer is set for the next one.
        let interest = chat.interest();
        let may_move = fired
            || (interest.readable && !read_blocked && may_read)
            || (interest.writable && !write_blocked && may_write)
            || (*commands_open && !commands_blocked);
        if !(progress || fired) || !may_move {
            // Stopped by the budget, not by the stream: come back after the others.
            let read_owed = interest.readable && !read_blocked && !may_read;
            let write_owed = interest.writable && !write_blocked && !may_write;
            if read_owed || write_owed {
                timer.yield_turn(cx);
            }
            break Poll::Pending;
        }
    };
    // An idle connection holds no read buffer.
    chat.release_read_buffer();
    commands.publish_queued(chat.queued_cost());
    poll
}

/// Carries out one command from a handle.
fn apply<P: Protocol>(chat: &mut Chat<P>, now: Instant, command: Command) {
    match command {
        Command::Push(data) => {
            chat.with_context(now, |_, ctx| ctx.push(data));
        }
        Command::PushProducer(producer) => {
            chat.with_context(now, |_, ctx| ctx.push_producer(producer));
        }
        Command::CloseWhenDone => chat.close_when_done(),
        Command::Close => chat.close(),
        Command::CloseBecause(reason) => {
            chat.with_context(now, |_, ctx| ctx.close_because(reason));
        }
    }
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
        timer.yield_turn(cx);
        return Deadline::Yield;
    }
    *fired = true;
    Deadline::Due
}

/// A connection's whole task: connects the chat if it is still connecting (the stream is),
/// runs [`poll_chat`] until the chat closes, and after a graceful close shuts the write side
/// down and drains the peer's input for at most [`LINGER`]; then runs `on_end` with the close
/// reason (a driver unregisters and counts the connection there), and returns the reason.
pub fn run_chat<P, S, T, C>(
    chat: Chat<P>,
    io: S,
    timer: T,
    commands: C,
    on_end: impl FnOnce(&CloseReason),
) -> impl Future<Output = CloseReason>
where
    P: Protocol,
    S: PollStream,
    T: PollTimer,
    C: PollCommands,
{
    run_chat_after(chat, std::future::ready(Ok(io)), timer, commands, on_end)
}

/// [`run_chat`] on a stream still to come: an acceptor's handshake, a connect. If `stream`
/// fails, the chat closes with that error (its protocol hears of it in `closed`, as of a failed
/// connect), and `on_end` runs with that reason.
///
/// One future for the whole connection: a task that awaited the stream and then
/// [`run_chat`] would hold the chat, the timer and the command source twice (once as its own
/// captures, once inside the future it awaits), which costs every idle connection hundreds of
/// bytes.
pub fn run_chat_after<P, S, T, C>(
    chat: Chat<P>,
    stream: impl Future<Output = io::Result<S>>,
    timer: T,
    commands: C,
    on_end: impl FnOnce(&CloseReason),
) -> impl Future<Output = CloseReason>
where
    P: Protocol,
    S: PollStream,
    T: PollTimer,
    C: PollCommands,
{
    connection(chat, stream, timer, commands, |reason| {
        on_end(&reason);
        reason
    })
}

/// The body of [`run_chat_after`], ending with `on_end(reason)`, whatever it returns: a
/// server's task returns `()` without a second future around this one.
///
/// An `async` block over captures used in place, not an `async fn`: an `async fn` moves each
/// argument into a local of its own, and the future then holds the chat twice.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would hold every argument twice"
)]
pub(crate) fn connection<P, S, T, C, R>(
    mut chat: Chat<P>,
    stream: impl Future<Output = io::Result<S>>,
    mut timer: T,
    mut commands: C,
    on_end: impl FnOnce(CloseReason) -> R,
) -> impl Future<Output = R>
where
    P: Protocol,
    S: PollStream,
    T: PollTimer,
    C: PollCommands,
{
    async move {
        match stream.await {
            Ok(mut io) => {
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
                    // Bounded as the linger is: a stream that must write before it shuts down
                    // (TLS records, close_notify) to a peer that no longer reads cannot hold
                    // the task.
                    if shut_down(&mut io, &mut timer, &mut commands, &mut open).await {
                        linger(&mut io, &mut timer, &mut commands, open).await;
                    }
                }
            }
            Err(e) => chat.handle_error(e),
        }
        // `poll_chat` is ready only once the chat is closed, and a closed chat has its reason.
        on_end(chat.close_reason().cloned().unwrap_or(CloseReason::Aborted))
    }
}

/// Shuts the write side down, for at most [`LINGER`] and until a close is commanded (a
/// shutdown's deadline): `true` once it is done, `false` if it was cut short.
async fn shut_down<S: PollStream, T: PollTimer, C: PollCommands>(
    io: &mut S,
    timer: &mut T,
    commands: &mut C,
    commands_open: &mut bool,
) -> bool {
    let until = timer.now() + LINGER;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = io.poll_shutdown(cx) {
            return Poll::Ready(done.is_ok());
        }
        if close_commanded(commands, commands_open, cx) || timer.poll_until(cx, until).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

/// Whether a `Close` (or `CloseBecause`) is among the commands waiting; the others are dropped,
/// as nothing else can be done for a connection already closed.
fn close_commanded<C: PollCommands>(
    commands: &mut C,
    commands_open: &mut bool,
    cx: &mut TaskContext<'_>,
) -> bool {
    while *commands_open {
        match commands.poll_command(cx) {
            Poll::Ready(Some(Command::Close | Command::CloseBecause(_))) => return true,
            Poll::Ready(Some(_)) => {}
            Poll::Ready(None) => *commands_open = false,
            Poll::Pending => break,
        }
    }
    false
}

/// How long a graceful close drains the peer's input after shutting the write side down.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards until the peer closes (or fails), for at most [`LINGER`]: unread input at
/// close makes the kernel reset the connection, which can destroy the reply still in flight
/// (Apache's "lingering close").
/// A close commanded meanwhile (a shutdown whose deadline passed) ends it at once.
async fn linger<S: PollStream, T: PollTimer, C: PollCommands>(
    io: &mut S,
    timer: &mut T,
    commands: &mut C,
    mut commands_open: bool,
) {
    let until = timer.now() + LINGER;
    let mut scratch = BytesMut::new();
    std::future::poll_fn(|cx| {
        if close_commanded(commands, &mut commands_open, cx) {
            return Poll::Ready(());
        }
        if poll_discard(io, cx, &mut scratch).is_ready() {
            return Poll::Ready(());
        }
        timer.poll_until(cx, until)
    })
    .await;
}

/// Reads and discards what `io` holds, into `scratch` (reused, 16 KiB), until the stream has
/// nothing more for now (`Pending`) or the peer has closed or failed (`Ready`): one step of a
/// lingering close, for [`run_chat`] and for drivers that linger on readiness events.
pub fn poll_discard<S: PollStream + ?Sized>(
    io: &mut S,
    cx: &mut TaskContext<'_>,
    scratch: &mut BytesMut,
) -> Poll<()> {
    loop {
        scratch.clear();
        scratch.reserve(16 * 1024);
        match io.poll_read_into(cx, scratch) {
            Poll::Ready(Ok(0)) => return Poll::Ready(()),
            Poll::Ready(Err(e)) if e.kind() != io::ErrorKind::Interrupted => return Poll::Ready(()),
            Poll::Ready(_) => {}
            Poll::Pending => return Poll::Pending,
        }
    }
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

/// Receive errors a UDP endpoint tolerates in one pass, on every driver (each pending ICMP
/// error is reported once; more than this in a row ends the pass rather than spin).
pub const MAX_RECV_ERRORS: u32 = 16;

/// The receive buffer of a UDP endpoint, on every driver: large enough for any datagram
/// (65 535 bytes less the headers).
pub const UDP_RECV_BUFFER: usize = 64 * 1024;

/// A UDP endpoint's whole task: runs `chat` on `socket` until the protocol closes it, with
/// [`poll_datagram_chat`].
pub async fn run_datagram_chat<P, S, T>(
    mut chat: crate::DatagramChat<P>,
    mut socket: S,
    mut timer: T,
) where
    P: crate::DatagramProtocol,
    S: PollDatagram,
    T: PollTimer,
{
    let mut buf = vec![0u8; UDP_RECV_BUFFER];
    std::future::poll_fn(|cx| poll_datagram_chat(&mut chat, &mut socket, &mut timer, &mut buf, cx))
        .await;
}

/// Moves every datagram that can move and fires deadlines, as [`poll_chat`] does for a
/// stream: `Ready(())` once the chat is closed, `Pending` once every source it polled has
/// registered the task's waker (or, after [`MAX_RECV_ERRORS`] receive errors or a deadline
/// re-armed for "now", the task has yielded). A send that fails loses that datagram only, as
/// UDP may; deadlines fire at most once per call. `buf` receives datagrams
/// ([`UDP_RECV_BUFFER`] bytes holds any).
pub fn poll_datagram_chat<P, S, T>(
    chat: &mut crate::DatagramChat<P>,
    socket: &mut S,
    timer: &mut T,
    buf: &mut [u8],
    cx: &mut TaskContext<'_>,
) -> Poll<()>
where
    P: crate::DatagramProtocol,
    S: PollDatagram + ?Sized,
    T: PollTimer + ?Sized,
{
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
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(_) => {
                    chat.handle_sent();
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        if chat.interest().readable {
            match socket.poll_recv_from(cx, buf) {
                Poll::Ready(Ok((n, peer))) => {
                    let payload = Bytes::copy_from_slice(&buf[..n.min(buf.len())]);
                    chat.handle_datagram(now, peer, payload);
                    progress = true;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                // ICMP errors from earlier sends (ECONNREFUSED...) surface here once each: not
                // fatal. One that keeps coming back ends this pass instead of spinning.
                Poll::Ready(Err(_)) => {
                    errors += 1;
                    if errors == MAX_RECV_ERRORS {
                        timer.yield_turn(cx);
                        return Poll::Pending;
                    }
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        match deadline(timer, cx, chat.poll_timeout(), &mut timers_fired) {
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
}

/// A new connection, as seen by a server's protocol factory, on every driver.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Accepted {
    /// The connection's id, for [`Handle`] commands.
    pub id: ConnId,
    /// The peer's address.
    pub peer: PeerAddr,
    /// A handle on this connection, to keep or give away (a chat room's member list).
    pub conn: ConnHandle,
    /// A handle on the server: its other connections, its counters, its shutdown.
    pub server: ServerHandle,
}

impl Accepted {
    /// A new connection's description (driver side).
    #[must_use]
    pub fn new(conn: ConnHandle, peer: impl Into<PeerAddr>, server: ServerHandle) -> Self {
        Self {
            id: conn.id(),
            peer: peer.into(),
            conn,
            server,
        }
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

    /// Runs `f` on every id and its sender.
    pub fn for_each_keyed(&self, mut f: impl FnMut(u64, &T)) {
        self.conns().iter().for_each(|(id, tx)| f(*id, tx));
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
/// Pushes are bounded: one is refused with [`PushError::Full`] while the connection's output
/// and the pushes waiting here cost more than four times `high_water` (the connection's high
/// water mark; see [`Backlog::for_high_water`]).
///
/// ```
/// use asynchat_core::backlog::PushError;
/// use asynchat_core::driver::{mailbox, Command};
/// use asynchat_core::Bytes;
///
/// let (tx, _rx) = mailbox(100);
/// assert_eq!(tx.send(Command::Push(Bytes::from(vec![0; 500]))), Ok(()));
/// let refused = tx.send(Command::Push(Bytes::from_static(b"more")));
/// assert!(matches!(refused, Err(PushError::Full { .. })));
/// assert_eq!(tx.send(Command::Close), Ok(()), "only pushes are bounded");
/// ```
#[must_use]
pub fn mailbox(high_water: usize) -> (MailboxSender, MailboxReceiver) {
    let shared = std::sync::Arc::new(Shared {
        news: std::sync::atomic::AtomicBool::default(),
        state: std::sync::Mutex::default(),
        backlog: Backlog::for_high_water(high_water),
    });
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

#[derive(Debug)]
struct Shared {
    /// Set (under the lock) whenever a sender queues a command, goes away, or takes the waker;
    /// cleared (under the lock) when the receiver registers its waker with nothing queued.
    /// While it is clear, polling could only find what the last poll found: the receiver
    /// answers `Pending` without taking the lock, once per wake-up of every connection.
    news: std::sync::atomic::AtomicBool,
    state: std::sync::Mutex<MailboxState>,
    /// What the pushes queued here and the connection's output cost.
    backlog: Backlog,
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
    /// Queues `command` and wakes the connection's task. Fails with [`PushError::Closed`] if
    /// the connection is gone, and a push with [`PushError::Full`] while the connection's
    /// backlog is above its limit (four high water marks); nothing is queued then.
    pub fn send(&self, command: Command) -> Result<(), PushError> {
        let cost = command.cost();
        if cost > 0 {
            self.0.backlog.try_reserve(cost)?;
        }
        let waker = {
            let mut state = self.0.lock();
            if state.receiver_gone {
                drop(state);
                self.0.backlog.release(cost);
                return Err(PushError::Closed);
            }
            state.queue.push_back(command);
            self.0.notify(&mut state)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl CommandSink for MailboxSender {
    /// One connection's mailbox: `id` is the connection it belongs to.
    fn send(&self, _id: ConnId, command: Command) -> Result<(), PushError> {
        Self::send(self, command)
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
            drop(state);
            self.shared.backlog.release(command.cost());
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

    fn publish_queued(&mut self, cost: usize) {
        self.shared.backlog.publish(cost);
    }
}

impl MailboxReceiver {
    /// What the connection's output and the pushes waiting for it cost, as last known.
    #[must_use]
    pub fn backlog(&self) -> usize {
        self.shared.backlog.total()
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
pub(crate) mod tests {
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
    pub(crate) struct Frozen(pub(crate) Instant);

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
        fn found_terminator(&mut self, ctx: &mut crate::Context<'_>, line: crate::Frame<'_>) {
            ctx.push(line);
            ctx.push("\n");
        }
        fn timeout(&mut self, ctx: &mut crate::Context<'_>, _: crate::Timer) {
            self.0 += 1;
            ctx.set_timer(1, ctx.now());
        }
    }

    /// A connection's future holds its chat once: a task that awaited a second future, or
    /// an `async fn` that moved its arguments into locals, held it two or three times, which
    /// every idle connection paid for.
    #[test]
    fn a_connection_future_holds_its_chat_once() {
        let chat = Chat::new(StormEcho(0)).unwrap();
        let chat_size = std::mem::size_of_val(&chat);
        let stream = std::future::ready(Ok(Memory::default()));
        let timer = Frozen(Instant::now());
        let served = connection(chat, stream, timer, NoCommands, |_| ());
        // The chat, the test stream twice (the future that yields it, then the stream itself:
        // 80 bytes each), a timer, the lingering close's state: under twice the chat. A second
        // copy of the chat would make it three times.
        let bound = 2 * chat_size + 100;
        let size = std::mem::size_of_val(&served);
        assert!(
            size < bound,
            "a connection future of {size} bytes for a chat of {chat_size}"
        );
        let chat = Chat::new(StormEcho(0)).unwrap();
        let client = run_chat(
            chat,
            Memory::default(),
            Frozen(Instant::now()),
            NoCommands,
            |_| (),
        );
        let size = std::mem::size_of_val(&client);
        assert!(size < bound, "run_chat: {size} bytes");
    }

    /// A close that arrives with the graceful close it overrides (a shutdown whose deadline
    /// has already passed) ends the lingering close too: `poll_chat` leaves it to the linger
    /// instead of spending it on a chat that was already closed.
    #[test]
    fn a_close_queued_behind_close_when_done_ends_the_linger() {
        let now = Instant::now();
        let (chat, io) = connected(crate::testing::LineEcho, now, b"");
        let (tx, rx) = mailbox(crate::outbox::DEFAULT_HIGH_WATER);
        tx.send(Command::CloseWhenDone).unwrap();
        tx.send(Command::Close).unwrap();
        // The peer keeps its side open and the clock never reaches the linger's end.
        let mut run = Box::pin(run_chat(chat, io, Frozen(now), rx, |_| ()));
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = TaskContext::from_waker(&waker);
        match run.as_mut().poll(&mut cx) {
            Poll::Ready(reason) => assert_eq!(reason, CloseReason::Done),
            Poll::Pending => panic!("still lingering: the Close was spent on a closed chat"),
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
            fn found_terminator(&mut self, ctx: &mut crate::Context<'_>, line: crate::Frame<'_>) {
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

    /// A stream that always has more: each read fills the room it is given with `x\n` lines.
    struct Endless {
        read: usize,
        written: usize,
    }

    impl PollStream for Endless {
        fn poll_read_into(
            &mut self,
            _: &mut TaskContext<'_>,
            buf: &mut BytesMut,
        ) -> Poll<io::Result<usize>> {
            let room = (buf.capacity() - buf.len()) & !1;
            for _ in 0..room / 2 {
                buf.extend_from_slice(b"x\n");
            }
            self.read += room;
            Poll::Ready(Ok(room))
        }
        fn poll_write_vectored(
            &mut self,
            _: &mut TaskContext<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let n = bufs.iter().map(|b| b.len()).sum();
            self.written += n;
            Poll::Ready(Ok(n))
        }
        fn poll_shutdown(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_connection_that_always_has_more_yields_after_its_turn_budget() {
        struct Echo;
        impl crate::Protocol for Echo {
            fn first_terminator(&self) -> crate::Terminator {
                "\n".into()
            }
            fn found_terminator(&mut self, ctx: &mut crate::Context<'_>, line: crate::Frame<'_>) {
                ctx.push_slices(&[&line, b"\n"]);
            }
        }
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let now = Instant::now();
        let budget = 16 * 1024;
        let config = crate::Config::default().turn_budget(budget);
        let mut chat = Chat::with_config(Echo, &config).unwrap();
        chat.handle_connected(now);
        let mut io = Endless {
            read: 0,
            written: 0,
        };
        let mut open = true;
        for turn in 1..=3 {
            let poll = poll_chat(
                &mut chat,
                &mut io,
                &mut Frozen(now),
                &mut NoCommands,
                &mut open,
                &mut cx,
            );
            assert_eq!(poll, Poll::Pending, "turn {turn} yields");
            assert_eq!(
                woken.0.load(Ordering::SeqCst),
                turn,
                "and wakes itself to come back"
            );
            // One read may overshoot the budget by at most what it was given.
            let most = turn * (budget + crate::chat::DEFAULT_READ_SIZE);
            assert!(
                io.read >= turn * budget && io.read <= most,
                "read {}",
                io.read
            );
            assert!(io.written <= most, "wrote {}", io.written);
        }
        assert!(io.written > 0, "what was read was answered");
    }

    /// A stream with no input whose write side takes everything, or nothing while shut.
    struct Gate {
        open: bool,
        output: Vec<u8>,
    }

    impl PollStream for Gate {
        fn poll_read_into(
            &mut self,
            _: &mut TaskContext<'_>,
            _: &mut BytesMut,
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_write_vectored(
            &mut self,
            _: &mut TaskContext<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            if !self.open {
                return Poll::Pending;
            }
            let before = self.output.len();
            bufs.iter().for_each(|b| self.output.extend_from_slice(b));
            Poll::Ready(Ok(self.output.len() - before))
        }
        fn poll_shutdown(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn pushes_through_a_mailbox_are_refused_while_the_receiver_is_above_its_high_water() {
        struct Quiet;
        impl crate::Protocol for Quiet {
            fn first_terminator(&self) -> crate::Terminator {
                "\n".into()
            }
            fn found_terminator(&mut self, _: &mut crate::Context<'_>, _: crate::Frame<'_>) {}
        }
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = TaskContext::from_waker(&waker);
        let now = Instant::now();
        let high = 4096;
        // Every push its own slice, so that the receiver's cost is the pushes' cost.
        let config = crate::Config::default()
            .water_marks(high / 2, high)
            .coalesce_below(0);
        let mut chat = Chat::with_config(Quiet, &config).unwrap();
        chat.handle_connected(now);
        let (tx, mut rx) = mailbox(high);
        let mut io = Gate {
            open: false,
            output: Vec::new(),
        };
        let mut open = true;
        let mut poll = |chat: &mut Chat<Quiet>, io: &mut Gate, rx: &mut MailboxReceiver| {
            poll_chat(chat, io, &mut Frozen(now), rx, &mut open, &mut cx)
        };
        let block = Bytes::from(vec![b'x'; 1000]);
        let mut taken = 0;
        while tx.send(Command::Push(block.clone())).is_ok() {
            taken += 1;
            assert!(taken < 100, "pushes are never refused");
        }
        let limit = high * crate::backlog::IN_FLIGHT_FACTOR;
        assert_eq!(
            taken,
            limit / push_cost(1000) + 1,
            "refused once above the limit"
        );
        let _ = poll(&mut chat, &mut io, &mut rx);
        assert_eq!(
            chat.queued_bytes(),
            taken * 1000,
            "the receiver took them all"
        );
        assert!(
            matches!(
                tx.send(Command::Push(block.clone())),
                Err(PushError::Full { limit, .. }) if limit == 4 * high
            ),
            "its own output is above the limit now"
        );
        io.open = true;
        let _ = poll(&mut chat, &mut io, &mut rx);
        assert_eq!(io.output.len(), taken * 1000, "it wrote them");
        assert_eq!(rx.backlog(), 0, "and said so");
        assert_eq!(tx.send(Command::Push(block)), Ok(()));
    }

    #[test]
    fn mailbox_delivers_in_order_wakes_and_ends() {
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let (tx, mut rx) = mailbox(usize::MAX);
        assert_eq!(rx.poll_command(&mut cx), Poll::Pending);
        assert!(tx.send(Command::Push(Bytes::from_static(b"a"))).is_ok());
        assert!(tx.send(Command::Close).is_ok());
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

        let (tx, rx) = mailbox(usize::MAX);
        drop(rx);
        assert_eq!(
            tx.send(Command::Close),
            Err(PushError::Closed),
            "nobody to receive"
        );
    }

    #[test]
    fn a_quiet_mailbox_still_takes_the_tasks_new_waker() {
        let (first, second) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (waker_1, waker_2) = (Waker::from(first.clone()), Waker::from(second.clone()));
        let (tx, mut rx) = mailbox(usize::MAX);
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
        assert!(tx.send(Command::Close).is_ok());
        assert_eq!(second.0.load(Ordering::SeqCst), 1, "the new waker is woken");
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "the old one is not");
    }

    #[test]
    fn commands_sent_from_other_threads_all_arrive_in_order_with_a_wake_for_each_wait() {
        // A receiver that waits for wakes, as a task would, against senders on other threads:
        // a command queued while the receiver goes quiet must still wake it.
        let (tx, mut rx) = mailbox(usize::MAX);
        let senders = 4;
        let per_sender = 2_000u32;
        let tx = Arc::new(tx);
        let threads: Vec<_> = (0..senders)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..per_sender {
                        let tag = format!("{t}:{i}");
                        assert!(tx.send(Command::Push(Bytes::from(tag))).is_ok());
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

/// The shared state of an async driver's server: its connections, counters and shutdown
/// (driver side: the drivers do not re-export it). Protocols and users see it through a
/// [`ServerHandle`]; see [`Handle::server`]. (mio's own `Handle` is its loop's, a different
/// type that hands out the same [`ConnHandle`] and [`ServerHandle`].)
///
/// Drivers [`register`](Self::register) each connection as it starts (its task polls the
/// returned receiver through [`poll_chat`]) and [`unregister`](Self::unregister) it when it
/// ends; the accept task counts what it accepts, refuses and fails to accept
/// ([`counters`](Self::counters)), waits for [`stopped`](Self::stopped), and then runs
/// [`wind_down`].
#[derive(Clone, Default)]
pub struct Handle {
    state: std::sync::Arc<ServerState>,
}

#[derive(Default)]
struct ServerState {
    registry: Registry<std::sync::Arc<MailboxSender>>,
    counters: Counters,
    /// Stop accepting.
    stop: Signal,
    /// Wind the connections down (a shutdown): implies `stop`.
    drain: Signal,
    /// The shutdown deadline passed: what is still open is being closed.
    forced: Signal,
    /// Set by the accept task once the server has wound down.
    finished: Signal,
    deadline: std::sync::Mutex<ShutdownDeadline>,
    /// Woken when the last connection unregisters.
    idle: std::sync::Mutex<Vec<std::task::Waker>>,
}

/// When a shutdown must be over, and the wind-down to tell when a later call brings it closer.
#[derive(Default)]
struct ShutdownDeadline {
    at: Option<Instant>,
    rearm: Option<std::task::Waker>,
}

impl ServerControl for ServerState {
    fn stop_accepting(&self) {
        self.stop.set();
    }

    fn shutdown(&self, deadline: std::time::Duration) {
        {
            let mut current = self
                .deadline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The earlier deadline wins (a second, impatient shutdown), as on mio, and a wind-down
            // already under way re-arms its timer for it. One too far off to name is no deadline
            // sooner than one already set.
            if let Some(at) = Instant::now().checked_add(deadline) {
                if current.at.is_none_or(|now_at| at < now_at) {
                    current.at = Some(at);
                    if let Some(waker) = current.rearm.take() {
                        waker.wake();
                    }
                }
            }
        }
        self.drain.set();
        self.stop.set();
    }

    fn conn(&self, id: ConnId) -> Option<ConnHandle> {
        self.registry
            .with(id.into_raw(), |tx| ConnHandle::new(id, tx.clone()))
    }

    fn for_each_conn(&self, f: &mut dyn FnMut(ConnHandle)) {
        let mut all = Vec::new();
        self.registry
            .for_each_keyed(|id, tx| all.push(ConnHandle::new(ConnId::from_raw(id), tx.clone())));
        // Called without the registry's lock: `f` may push, close or look connections up.
        all.into_iter().for_each(f);
    }

    fn stats(&self) -> ServerStats {
        self.counters.stats()
    }
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

    /// The server handle protocols and users get: the same type on every driver.
    #[must_use]
    pub fn server(&self) -> ServerHandle {
        ServerHandle::new(self.state.clone())
    }

    /// The server's counters (driver side: the accept task counts what it accepts).
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.state.counters
    }

    /// Stops accepting; open connections go on.
    pub fn stop_accepting(&self) {
        self.state.stop.set();
    }

    /// Graceful shutdown within `deadline`: see [`ServerHandle::shutdown`].
    pub fn shutdown(&self, deadline: std::time::Duration) {
        ServerControl::shutdown(&*self.state, deadline);
    }

    /// Ready once the server was told to stop accepting (driver side: the accept task).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.state.stop.wait()
    }

    /// Whether the server was told to stop accepting.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.state.stop.is_set()
    }

    /// Ready once the server was told to stop accepting.
    pub fn poll_stopped(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        self.state.stop.poll_set(cx)
    }

    /// Ready once the server was told to shut down (not only to stop accepting).
    pub fn poll_draining(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        self.state.drain.poll_set(cx)
    }

    /// Whether the server was told to shut down.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.state.drain.is_set()
    }

    /// Ready once the shutdown deadline has passed and what was left is being closed.
    pub fn poll_forced(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        self.state.forced.poll_set(cx)
    }

    /// Marks the shutdown deadline passed (driver side: [`wind_down`] does).
    pub fn force(&self) {
        self.state.forced.set();
    }

    /// Marks the server wound down (driver side: the end of its accept task).
    pub fn finish(&self) {
        self.state.finished.set();
    }

    /// Whether the server has wound down.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.state.finished.is_set()
    }

    /// Ready once the server has wound down.
    pub fn finished(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.state.finished.wait()
    }

    /// How long connections may take to flush once stopped: what
    /// [`shutdown`](Self::shutdown) said, else [`DEFAULT_SHUTDOWN_DEADLINE`].
    #[must_use]
    pub fn shutdown_deadline(&self) -> std::time::Duration {
        self.shutdown_at().map_or(DEFAULT_SHUTDOWN_DEADLINE, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }

    /// When the shutdown must be over, if one was asked for with a deadline.
    #[must_use]
    pub fn shutdown_at(&self) -> Option<Instant> {
        self.lock_deadline().at
    }

    /// Ready with the shutdown's deadline once it is earlier than `armed` (a later
    /// [`shutdown`](Self::shutdown) with a shorter deadline); otherwise the task is woken when
    /// that happens. Driver side: [`wind_down`] re-arms its timer with it.
    pub fn poll_earlier_deadline(&self, cx: &mut TaskContext<'_>, armed: Instant) -> Poll<Instant> {
        let mut deadline = self.lock_deadline();
        match deadline.at {
            Some(at) if at < armed => Poll::Ready(at),
            _ => {
                deadline.rearm = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn lock_deadline(&self) -> std::sync::MutexGuard<'_, ShutdownDeadline> {
        self.state
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ready once no connection is registered; woken by the last one to unregister.
    pub fn poll_idle(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.state.registry.is_empty() {
            return Poll::Ready(());
        }
        let mut idle = self
            .state
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Checked again under the lock: `unregister` wakes under it.
        if self.state.registry.is_empty() {
            return Poll::Ready(());
        }
        if !idle.iter().any(|w| w.will_wake(cx.waker())) {
            idle.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Adds a connection whose high water mark is `high_water` (driver side): a handle on it,
    /// and the mailbox its task polls. Counted as accepted.
    #[must_use]
    pub fn register(&self, high_water: usize) -> (ConnHandle, MailboxReceiver) {
        let (tx, rx) = mailbox(high_water);
        let tx = std::sync::Arc::new(tx);
        let id = ConnId::from_raw(self.state.registry.insert(tx.clone()));
        self.state.counters.accepted();
        (ConnHandle::new(id, tx), rx)
    }

    /// Forgets a connection that has ended for `reason` (driver side), counting it; the last
    /// one wakes whoever waits for the server to be idle.
    pub fn unregister(&self, id: ConnId, reason: Option<&CloseReason>) {
        // Counted first: whoever sees the registry empty must see the close counted too.
        self.state.counters.closed(reason);
        self.state.registry.remove(id.into_raw());
        self.unregistered();
    }

    /// Forgets a connection whose protocol could not start (driver side): counted as refused,
    /// not as closed.
    pub fn refuse(&self, id: ConnId) {
        self.state.counters.refused();
        self.state.registry.remove(id.into_raw());
        self.unregistered();
    }

    fn unregistered(&self) {
        if self.state.registry.is_empty() {
            let waiters = std::mem::take(
                &mut *self
                    .state
                    .idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            waiters.into_iter().for_each(std::task::Waker::wake);
        }
    }

    /// A handle on connection `id`, if it is still open.
    #[must_use]
    pub fn conn(&self, id: ConnId) -> Option<ConnHandle> {
        self.state.conn(id)
    }

    fn send(&self, id: ConnId, command: Command) -> Result<(), PushError> {
        self.state
            .registry
            .with(id.into_raw(), |tx| tx.send(command))
            .unwrap_or(Err(PushError::Closed))
    }

    /// Queues `data` on connection `id`. Refused, with nothing queued, when the connection has
    /// closed ([`PushError::Closed`]) or its output and the pushes in flight to it are above
    /// four high water marks ([`PushError::Full`]; see [`Backlog`]): the caller is never blocked, and decides whether to drop the
    /// data, retry later, or drop the receiver ([`close_because`](Self::close_because)).
    pub fn push(&self, id: ConnId, data: impl Into<Bytes>) -> Result<(), PushError> {
        self.send(id, Command::Push(data.into()))
    }

    /// Flushes connection `id`, then closes it; [`PushError::Closed`] if it has closed.
    pub fn close_when_done(&self, id: ConnId) -> Result<(), PushError> {
        self.send(id, Command::CloseWhenDone)
    }

    /// Closes connection `id` now, dropping its queued output; [`PushError::Closed`] if it has
    /// closed.
    pub fn close(&self, id: ConnId) -> Result<(), PushError> {
        self.send(id, Command::Close)
    }

    /// Closes connection `id` now for `reason`, dropping its queued output;
    /// [`PushError::Closed`] if it has closed.
    pub fn close_because(&self, id: ConnId, reason: CloseReason) -> Result<(), PushError> {
        self.send(id, Command::CloseBecause(reason))
    }

    /// Connections open now.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.state.registry.len()
    }

    /// Flushes and closes every connection.
    pub fn close_all_when_done(&self) {
        self.state.registry.for_each(|tx| {
            let _ = tx.send(Command::CloseWhenDone);
        });
    }

    /// Closes every connection now, dropping their output.
    pub fn close_all(&self) {
        self.state.registry.for_each(|tx| {
            let _ = tx.send(Command::Close);
        });
    }
}
