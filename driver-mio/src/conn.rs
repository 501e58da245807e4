//! A stream connection in the loop: a `Chat` and its socket.

use std::io;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use asynchat_core::driver::{poll_chat, poll_discard, NoCommands, LINGER};
use asynchat_core::{BytesMut, Chat, CloseReason, Protocol, TlsError};
use mio::{Interest, Registry, Token};

use crate::handle::Push;
use crate::io::{no_waker, StreamIo, Transport, Turn};

/// What the loop can ask of an entry, whatever its protocol and socket types.
pub(crate) trait Entry {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()>;
    fn deregister(&mut self, registry: &Registry);
    /// The socket is ready (`readable`/`writable`), or the loop wants the entry re-driven.
    fn on_ready(&mut self, cx: &mut Cx<'_>, readable: bool, writable: bool);
    fn on_timeout(&mut self, cx: &mut Cx<'_>);
    /// Queues `data` without doing I/O: the loop calls `on_ready` once after a batch of
    /// commands, so a burst of pushes to one connection costs one write, not one each.
    fn on_push(&mut self, cx: &mut Cx<'_>, push: Push);
    fn on_close(&mut self, cx: &mut Cx<'_>, graceful: bool);
    /// Closes at once for `reason` (a stream connection reports it to its protocol; other
    /// entries close as [`on_close`](Self::on_close) does, not gracefully).
    fn on_close_because(&mut self, cx: &mut Cx<'_>, reason: CloseReason) {
        let _ = reason;
        self.on_close(cx, false);
    }
    /// Whether bytes pushed through a handle have somewhere to go (a stream connection).
    fn takes_pushes(&self) -> bool {
        false
    }
    /// Why a stream connection closed (for the server's counters); `None` for other entries
    /// or while open.
    fn close_reason(&self) -> Option<CloseReason> {
        None
    }
    /// What a stream connection's queued output costs ([`Chat::queued_cost`]); `None` for
    /// entries that take no pushes through the handle.
    fn queued_cost(&self) -> Option<usize> {
        None
    }
    /// The earliest time the entry wants `on_timeout`.
    fn deadline(&self) -> Option<Instant>;
    /// Nothing more to do: the loop deregisters and drops it.
    fn is_finished(&self) -> bool;
}

/// What an entry gets from the loop while handling an event.
pub(crate) struct Cx<'a> {
    pub(crate) now: Instant,
    pub(crate) registry: &'a Registry,
    pub(crate) token: Token,
    /// The event reported the peer's end of stream or an error: read to the end, since no
    /// further readiness edge will come for it.
    pub(crate) hangup: bool,
    /// Set by the entry: it stopped at its turn budget with work left, and wants `on_ready`
    /// again in a later turn (no readiness edge will come for what the socket already holds).
    pub(crate) yielded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A client's connect in progress; the deadline of the handshake that follows, if it has
    /// one (counted from the connect, so that it bounds both).
    Connecting(Option<Instant>),
    /// The handshake (implicit TLS) runs, until its deadline if it has one; the protocol is told
    /// it is connected once it is over.
    Handshaking(Option<Instant>),
    Live,
    /// Closed gracefully: the stream's end (a TLS `close_notify`, a FIN) is being written.
    ShuttingDown(Instant),
    /// Closed gracefully, write side shut down, draining input until EOF or the deadline.
    Lingering(Instant),
    Finished,
}

impl Phase {
    /// Before the close: the chat still runs.
    fn is_open(self) -> bool {
        matches!(
            self,
            Self::Connecting(_) | Self::Handshaking(_) | Self::Live
        )
    }
}

pub(crate) struct StreamConn<P, T> {
    chat: Chat<P>,
    stream: T,
    phase: Phase,
    /// Whether the socket is registered for writability (only while output is pending).
    write_registered: bool,
}

/// The error a handshake that took too long closes its connection with.
fn handshake_timed_out() -> io::Error {
    // The kind the core's TLS layer gives every TLS failure.
    io::Error::new(io::ErrorKind::InvalidData, TlsError::HandshakeTimedOut)
}

impl<P: Protocol, T: Transport> StreamConn<P, T> {
    /// An accepted connection: the chat is connected at once, or after the stream's handshake,
    /// which must be over by `handshake_deadline` (`None`: no limit).
    pub(crate) fn accepted(
        mut chat: Chat<P>,
        stream: T,
        now: Instant,
        handshake_deadline: Option<Instant>,
    ) -> Self {
        let phase = if stream.handshakes() {
            Phase::Handshaking(handshake_deadline)
        } else {
            chat.handle_connected(now);
            Phase::Live
        };
        Self {
            chat,
            stream,
            phase,
            write_registered: false,
        }
    }

    /// A client whose connect is in progress; a handshake that follows must be over by
    /// `handshake_deadline` (`None`: no limit).
    pub(crate) fn connecting(
        chat: Chat<P>,
        stream: T,
        handshake_deadline: Option<Instant>,
    ) -> Self {
        let deadline = handshake_deadline.filter(|_| stream.handshakes());
        Self {
            chat,
            stream,
            phase: Phase::Connecting(deadline),
            write_registered: true,
        }
    }

    fn interest(&self) -> Interest {
        crate::io::interest(self.write_registered)
    }

    /// Moves bytes both ways with the core's connection loop until nothing more moves or the
    /// turn's budget ([`Chat::turn_budget`]) is spent either way, then settles registration
    /// and closing. A direction is tried only if it may make progress: readable/writable
    /// readiness was reported, or it stopped for a reason of ours (backpressure, budget)
    /// rather than at `WouldBlock`. Handles apply their commands before this (see
    /// [`Entry::on_push`]), so the loop polls none. A handshake still under way runs first.
    fn drive(&mut self, cx: &mut Cx<'_>, readable: bool, writable: bool) {
        self.note_readiness(cx, readable, writable);
        let mut task = TaskContext::from_waker(no_waker());
        if let Phase::Handshaking(_) = self.phase {
            match self.stream.poll_handshake(&mut task) {
                Poll::Ready(Ok(())) => {
                    self.phase = Phase::Live;
                    self.chat.handle_connected(cx.now);
                }
                Poll::Ready(Err(e)) => self.chat.handle_error(e),
                Poll::Pending => {}
            }
        }
        if self.phase == Phase::Live {
            let mut turn = Turn::new(cx.now);
            let _ = poll_chat(
                &mut self.chat,
                &mut self.stream,
                &mut turn,
                &mut NoCommands,
                &mut false,
                &mut task,
            );
            cx.yielded = turn.yielded && !self.chat.is_closed();
        }
        self.settle(cx);
    }

    /// Remembers what the event reported: edge-triggered readiness reports each edge once.
    fn note_readiness(&mut self, cx: &Cx<'_>, readable: bool, writable: bool) {
        if let Some(socket) = self.stream.socket() {
            socket.ready.read_drained &= !readable;
            socket.ready.write_blocked &= !writable;
            socket.ready.hung_up |= cx.hangup;
        }
    }

    /// One step of a lingering close: `true` once the peer has closed or failed. What comes
    /// now is not for the chat: it is read off the socket underneath, undeciphered.
    fn discard(&mut self) -> bool {
        let Some(socket) = self.stream.socket() else {
            return true;
        };
        let mut scratch = BytesMut::new();
        let mut task = TaskContext::from_waker(no_waker());
        poll_discard(socket, &mut task, &mut scratch).is_ready()
    }

    /// One step of a graceful close's shutdown: writes the stream's end, then lingers.
    fn shut_down(&mut self, now: Instant) {
        let mut task = TaskContext::from_waker(no_waker());
        match self.stream.poll_shutdown(&mut task) {
            Poll::Ready(Ok(())) => {
                // Read once whatever the last edge said: the peer's end may have been reported
                // while the chat, closing, no longer read.
                if let Some(socket) = self.stream.socket() {
                    socket.ready.read_drained = false;
                }
                self.phase = if self.discard() {
                    Phase::Finished
                } else {
                    Phase::Lingering(now + LINGER)
                };
            }
            Poll::Ready(Err(_)) => self.phase = Phase::Finished,
            Poll::Pending => {}
        }
    }

    /// After I/O: registers write interest only while output is pending, and closes.
    fn settle(&mut self, cx: &mut Cx<'_>) {
        if self.chat.is_closed() && self.phase.is_open() {
            let graceful = self.chat.close_reason().is_some_and(|r| r.is_graceful());
            if graceful {
                self.phase = Phase::ShuttingDown(cx.now + LINGER);
                self.shut_down(cx.now);
            } else {
                self.phase = Phase::Finished;
            }
        }
        let chat_writes = self.phase == Phase::Live && self.chat.interest().writable;
        let Some(socket) = self.stream.socket() else {
            self.phase = Phase::Finished;
            return;
        };
        // A write that stopped at `WouldBlock` waits for the writable edge, whoever made it:
        // the chat, or the stream's own records (a TLS handshake, a `close_notify`).
        let want_write = match self.phase {
            Phase::Connecting(_) => true,
            Phase::Handshaking(_) | Phase::ShuttingDown(_) => socket.ready.write_blocked,
            Phase::Live => chat_writes || socket.ready.write_blocked,
            Phase::Lingering(_) | Phase::Finished => false,
        };
        if want_write != self.write_registered && self.phase != Phase::Finished {
            self.write_registered = want_write;
            let interest = crate::io::interest(want_write);
            if let Err(e) = cx.registry.reregister(&mut socket.io, cx.token, interest) {
                self.chat.handle_error(e);
                self.phase = Phase::Finished;
            }
        }
    }

    fn finish_connect(&mut self, cx: &mut Cx<'_>, handshake_deadline: Option<Instant>) {
        let Some(socket) = self.stream.socket() else {
            self.phase = Phase::Finished;
            return;
        };
        match socket.io.connect_result() {
            Ok(true) if self.stream.handshakes() => {
                self.phase = Phase::Handshaking(handshake_deadline);
            }
            Ok(true) => {
                self.phase = Phase::Live;
                self.chat.handle_connected(cx.now);
            }
            Ok(false) => {}
            Err(e) => {
                self.chat.handle_error(e);
                self.phase = Phase::Finished;
            }
        }
    }
}

impl<P: Protocol, T: Transport> Entry for StreamConn<P, T> {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = self.interest();
        match self.stream.socket() {
            Some(socket) => registry.register(&mut socket.io, token, interest),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn deregister(&mut self, registry: &Registry) {
        // The socket is about to be dropped, which removes it from epoll anyway.
        if let Some(socket) = self.stream.socket() {
            let _ = registry.deregister(&mut socket.io);
        }
    }

    fn on_ready(&mut self, cx: &mut Cx<'_>, readable: bool, writable: bool) {
        match self.phase {
            Phase::Connecting(handshake_deadline) => {
                if readable || writable {
                    self.finish_connect(cx, handshake_deadline);
                }
                if matches!(self.phase, Phase::Live | Phase::Handshaking(_)) {
                    self.drive(cx, true, true);
                } else {
                    self.settle(cx);
                }
            }
            Phase::Handshaking(_) | Phase::Live => self.drive(cx, readable, writable),
            Phase::ShuttingDown(_) => {
                self.note_readiness(cx, readable, writable);
                self.shut_down(cx.now);
                self.settle(cx);
            }
            Phase::Lingering(_) => {
                self.note_readiness(cx, readable, false);
                if self.discard() {
                    self.phase = Phase::Finished;
                }
            }
            Phase::Finished => {}
        }
    }

    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        match self.phase {
            Phase::ShuttingDown(at) | Phase::Lingering(at) if at <= cx.now => {
                self.phase = Phase::Finished;
            }
            // The core's loop fires a live connection's due deadline itself.
            Phase::Live => self.drive(cx, false, false),
            Phase::Handshaking(Some(at)) if at <= cx.now => {
                self.chat.handle_error(handshake_timed_out());
                self.settle(cx);
            }
            Phase::Connecting(handshake_deadline) => {
                if handshake_deadline.is_some_and(|at| at <= cx.now) {
                    self.chat.handle_error(handshake_timed_out());
                } else {
                    self.chat.handle_timeout(cx.now);
                }
                self.settle(cx);
            }
            _ => {}
        }
    }

    fn on_push(&mut self, cx: &mut Cx<'_>, push: Push) {
        if self.phase.is_open() {
            self.chat.with_context(cx.now, |_, ctx| match push {
                Push::Bytes(data) => ctx.push(data),
                Push::Producer(producer) => ctx.push_producer(producer),
            });
        }
    }

    fn on_close(&mut self, cx: &mut Cx<'_>, graceful: bool) {
        if matches!(self.phase, Phase::ShuttingDown(_) | Phase::Lingering(_)) && !graceful {
            // Closed already, only ending the stream or draining the peer: a close now (a
            // shutdown's deadline) ends that too.
            self.phase = Phase::Finished;
            return;
        }
        if !self.phase.is_open() {
            return;
        }
        if graceful {
            self.chat.close_when_done();
        } else {
            self.chat.close();
        }
        if self.phase == Phase::Live {
            self.drive(cx, false, false);
        } else {
            self.settle(cx);
        }
    }

    fn close_reason(&self) -> Option<CloseReason> {
        self.chat.close_reason().cloned()
    }

    fn takes_pushes(&self) -> bool {
        true
    }

    fn on_close_because(&mut self, cx: &mut Cx<'_>, reason: CloseReason) {
        if !self.phase.is_open() {
            return;
        }
        self.chat
            .with_context(cx.now, |_, ctx| ctx.close_because(reason));
        self.settle(cx);
    }

    fn queued_cost(&self) -> Option<usize> {
        Some(self.chat.queued_cost())
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::ShuttingDown(at) | Phase::Lingering(at) => Some(at),
            Phase::Finished => None,
            Phase::Handshaking(at) => at,
            Phase::Connecting(handshake) => [self.chat.poll_timeout(), handshake]
                .into_iter()
                .flatten()
                .min(),
            // The stream's own: the handshake after a switch to TLS in band.
            Phase::Live => [self.chat.poll_timeout(), self.stream.deadline()]
                .into_iter()
                .flatten()
                .min(),
        }
    }

    fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }
}
