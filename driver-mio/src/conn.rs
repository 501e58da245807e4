//! A stream connection in the loop: a `Chat` and its socket.

use crate::handle::Push;
use std::io;
use std::time::Instant;

use std::task::Context as TaskContext;

use asynchat_core::driver::{poll_chat, poll_discard, NoCommands, LINGER};
use asynchat_core::{BytesMut, Chat, CloseReason, Protocol};
use mio::{Interest, Registry, Token};

use crate::io::{no_waker, Polled, Readiness, StreamIo, Turn};

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
    Connecting,
    Live,
    /// Closed gracefully, write side shut down, draining input until EOF or the deadline.
    Lingering(Instant),
    Finished,
}

pub(crate) struct StreamConn<P, S> {
    chat: Chat<P>,
    io: S,
    phase: Phase,
    /// Whether the socket is registered for writability (only while output is pending).
    write_registered: bool,
    ready: Readiness,
}

impl<P: Protocol, S: StreamIo> StreamConn<P, S> {
    /// An accepted connection: the chat is connected at once.
    pub(crate) fn accepted(mut chat: Chat<P>, io: S, now: Instant) -> Self {
        chat.handle_connected(now);
        Self {
            chat,
            io,
            phase: Phase::Live,
            write_registered: false,
            ready: Readiness::default(),
        }
    }

    /// A client whose connect is in progress.
    pub(crate) fn connecting(chat: Chat<P>, io: S) -> Self {
        Self {
            chat,
            io,
            phase: Phase::Connecting,
            write_registered: true,
            ready: Readiness::default(),
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
    /// [`Entry::on_push`]), so the loop polls none.
    fn drive(&mut self, cx: &mut Cx<'_>, readable: bool, writable: bool) {
        self.ready.read_drained &= !readable;
        self.ready.write_blocked &= !writable;
        self.ready.hung_up |= cx.hangup;
        let mut turn = Turn::new(cx.now);
        let mut stream = Polled {
            io: &mut self.io,
            ready: &mut self.ready,
        };
        let _ = poll_chat(
            &mut self.chat,
            &mut stream,
            &mut turn,
            &mut NoCommands,
            &mut false,
            &mut TaskContext::from_waker(no_waker()),
        );
        cx.yielded = turn.yielded && !self.chat.is_closed();
        self.settle(cx);
    }

    /// One step of a lingering close: `true` once the peer has closed or failed.
    fn discard(&mut self) -> bool {
        let mut stream = Polled {
            io: &mut self.io,
            ready: &mut self.ready,
        };
        let mut scratch = BytesMut::new();
        let mut task = TaskContext::from_waker(no_waker());
        poll_discard(&mut stream, &mut task, &mut scratch).is_ready()
    }

    /// After I/O: registers write interest only while output is pending, and closes.
    fn settle(&mut self, cx: &mut Cx<'_>) {
        if self.chat.is_closed() && matches!(self.phase, Phase::Live | Phase::Connecting) {
            let graceful = self.chat.close_reason().is_some_and(|r| r.is_graceful());
            self.phase = Phase::Finished;
            // Read once whatever the last edge said: the peer's end may have been reported
            // while the chat, closing, no longer read.
            self.ready.read_drained = false;
            if graceful && self.io.shutdown_write().is_ok() && !self.discard() {
                self.phase = Phase::Lingering(cx.now + LINGER);
            }
        }
        let want_write = match self.phase {
            Phase::Connecting => true,
            Phase::Live => self.chat.interest().writable,
            Phase::Lingering(_) | Phase::Finished => false,
        };
        if want_write != self.write_registered && self.phase != Phase::Finished {
            self.write_registered = want_write;
            let interest = self.interest();
            if let Err(e) = cx.registry.reregister(&mut self.io, cx.token, interest) {
                self.chat.handle_error(e);
                self.phase = Phase::Finished;
            }
        }
    }

    fn finish_connect(&mut self, cx: &mut Cx<'_>) {
        match self.io.connect_result() {
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

impl<P: Protocol, S: StreamIo> Entry for StreamConn<P, S> {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = self.interest();
        registry.register(&mut self.io, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) {
        // The socket is about to be dropped, which removes it from epoll anyway.
        let _ = registry.deregister(&mut self.io);
    }

    fn on_ready(&mut self, cx: &mut Cx<'_>, readable: bool, writable: bool) {
        match self.phase {
            Phase::Connecting => {
                if readable || writable {
                    self.finish_connect(cx);
                }
                if self.phase == Phase::Live {
                    self.drive(cx, true, true);
                } else {
                    self.settle(cx);
                }
            }
            Phase::Live => self.drive(cx, readable, writable),
            Phase::Lingering(_) => {
                self.ready.read_drained &= !readable;
                if self.discard() {
                    self.phase = Phase::Finished;
                }
            }
            Phase::Finished => {}
        }
    }

    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        match self.phase {
            Phase::Lingering(at) if at <= cx.now => self.phase = Phase::Finished,
            // The core's loop fires a live connection's due deadline itself.
            Phase::Live => self.drive(cx, false, false),
            Phase::Connecting => {
                self.chat.handle_timeout(cx.now);
                self.settle(cx);
            }
            _ => {}
        }
    }

    fn on_push(&mut self, cx: &mut Cx<'_>, push: Push) {
        if matches!(self.phase, Phase::Live | Phase::Connecting) {
            self.chat.with_context(cx.now, |_, ctx| match push {
                Push::Bytes(data) => ctx.push(data),
                Push::Producer(producer) => ctx.push_producer(producer),
            });
        }
    }

    fn on_close(&mut self, cx: &mut Cx<'_>, graceful: bool) {
        if matches!(self.phase, Phase::Lingering(_)) && !graceful {
            // Closed already, only draining the peer: a close now (a shutdown's deadline)
            // ends that too.
            self.phase = Phase::Finished;
            return;
        }
        if !matches!(self.phase, Phase::Live | Phase::Connecting) {
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
        if !matches!(self.phase, Phase::Live | Phase::Connecting) {
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
            Phase::Lingering(at) => Some(at),
            Phase::Finished => None,
            Phase::Connecting | Phase::Live => self.chat.poll_timeout(),
        }
    }

    fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }
}
