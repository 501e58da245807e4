//! Every transition of a connection and every gate on what it may do, in one place.
//!
//! Four machines run side by side, each with a state of its own, and the gates below read them
//! together:
//!
//! - **lifecycle** ([`State`]): Connecting, Open, Closing, Closed, as in the module diagram;
//!   [`Core::close_because`] is the one way into Closed, [`Core::close_when_done`] and
//!   `handle_connected` the ways into Closing, [`Core::finish_if_flushed`] the way out of it;
//! - **read side**: open until the peer's end of stream (`read_eof`), then ended; independent of
//!   the lifecycle (a half-closed peer still gets its output);
//! - **delivery gate** ([`Core::may_deliver`]): input reaches the protocol only while Open, not
//!   paused by the protocol, and below the output's high water mark; the frame clock runs only
//!   while the gate is open ([`Chat::time_frame`]);
//! - **close notification**: `Protocol::closed` runs exactly once, after the lifecycle reaches
//!   Closed ([`Chat::notify_closed`]).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::collector::Incoming;
use super::{Chat, CloseReason, Protocol};
use crate::error::{Error, Misuse, PeerError};
use crate::framer::Framer;
use crate::outbox::Outbox;
use crate::timers::Timers;

/// Where the connection is in its life; see the [module docs](crate::chat) for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// A client's connect has not completed.
    Connecting,
    /// Connected: frames are delivered and output written.
    Open,
    /// Flushing output after `close_when_done`; input is discarded.
    Closing,
    /// Finished.
    Closed,
}

/// Where a connection stands with an in-band switch to TLS (STARTTLS): one more machine,
/// orthogonal to the others but for the read side, which it holds while `Requested`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsPhase {
    /// Plaintext, no switch asked for (or a connection that was TLS from the start).
    Plain,
    /// The protocol asked for TLS: no input is read or delivered until the driver has put
    /// TLS in place, once the bytes queued before the request are written (the outbox's
    /// barrier: no write goes past them, what was queued after goes inside TLS).
    Requested,
    /// The driver has put TLS in place: everything from here on is inside it.
    Started,
}

/// An idle timeout in the 8 bytes of its nanoseconds rather than the 16 of an
/// `Option<Duration>` (every connection carries one): `u64::MAX` is none. A timeout of 584
/// years or more counts as none, as its deadline would never come.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdleTimeout(u64);

impl IdleTimeout {
    pub(super) fn new(timeout: Option<Duration>) -> Self {
        Self(timeout.map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        }))
    }

    fn get(self) -> Option<Duration> {
        (self.0 != u64::MAX).then(|| Duration::from_nanos(self.0))
    }

    /// The deadline of an idle clock started at `from`, if there is a timeout.
    pub(super) fn deadline(self, from: Instant) -> Option<Instant> {
        self.get().and_then(|d| from.checked_add(d))
    }
}

/// How a closed connection ended, and whether its protocol has heard
/// ([`Protocol::closed`](super::Protocol::closed) runs once).
#[derive(Debug)]
pub(super) struct Closed {
    pub(super) reason: CloseReason,
    pub(super) notified: bool,
}

/// Everything of a connection but the protocol, so that callbacks can borrow both.
#[derive(Debug)]
pub(super) struct Core {
    pub(super) framer: Framer,
    pub(super) outbox: Outbox,
    pub(super) incoming: Incoming,
    pub(super) state: State,
    /// Boxed: every connection carries the slot, few get to fill it while others wait.
    pub(super) closed: Option<Box<Closed>>,
    pub(super) read_eof: bool,
    pub(super) paused_by_protocol: bool,
    pub(super) tls: TlsPhase,
    /// The most a read reserves, and what the next read reserves: reads start at
    /// [`MIN_READ`], double while they fill the buffer and halve when they come back mostly
    /// empty. (u32: a read of 4 GiB is never wanted, and the chat stays small.)
    pub(super) read_size: u32,
    pub(super) next_read: u32,
    /// [`Config::turn_budget`] (u32 for the same reason as `read_size`).
    pub(super) turn_budget: u32,
    pub(super) idle_timeout: IdleTimeout,
    pub(super) idle_deadline: Option<Instant>,
    /// Boxed: only the connections of protocols that set a frame timeout fill the slot.
    pub(super) frame_clock: Option<Box<FrameClock>>,
    pub(super) timers: Timers,
    pub(super) last_now: Option<Instant>,
}

impl Core {
    pub(super) fn close_because(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.outbox.discard();
        self.timers.clear();
        self.idle_deadline = None;
        self.clear_frame_deadline();
        self.closed = Some(Box::new(Closed {
            reason,
            notified: false,
        }));
    }

    pub(super) fn close_when_done(&mut self) {
        match self.state {
            // Output queued before the connect completes still goes out once it does.
            State::Connecting => self.outbox.close_when_done(),
            State::Open => {
                self.outbox.close_when_done();
                self.state = State::Closing;
            }
            State::Closing | State::Closed => {}
        }
        self.finish_if_flushed();
    }

    pub(super) fn finish_if_flushed(&mut self) {
        if self.state == State::Closing && self.outbox.is_empty() {
            let reason = if self.read_eof {
                CloseReason::PeerClosed
            } else {
                CloseReason::Done
            };
            self.close_because(reason);
        }
    }

    #[inline]
    pub(super) fn push(&mut self, data: Bytes) {
        if self.accepts_output() {
            if let Err(e) = self.outbox.push(data) {
                self.close_because(CloseReason::Error(e));
            }
        }
    }

    #[inline]
    pub(super) fn push_slices(&mut self, parts: &[&[u8]]) {
        if self.accepts_output() {
            if let Err(e) = self.outbox.push_slices(parts) {
                self.close_because(CloseReason::Error(e));
            }
        }
    }

    /// As Python: output pushed once closing began is dropped, not an error that aborts the
    /// flush of what was queued before.
    #[inline]
    pub(super) fn accepts_output(&self) -> bool {
        matches!(self.state, State::Connecting | State::Open) && !self.outbox.is_closing()
    }

    pub(super) fn touch(&mut self, now: Instant) {
        self.last_now = Some(now);
        // With no timeout there is no deadline to move (none was ever set).
        self.idle_deadline = self.idle_timeout.deadline(now);
    }

    /// Whether the default collector holds more than its bound: the line limit for a delimited
    /// or until-EOF frame (the peer's fault), the counted-frame bound for a count (the
    /// protocol's, checked against the whole count as soon as its first byte is held).
    #[inline]
    pub(super) fn over_collector_bound(&self) -> Option<Error> {
        let held = self.incoming.len();
        if held == 0 {
            return None;
        }
        if self.framer.delimits() {
            // The common case (a line being collected), without building the terminator.
            let limit = self.framer.max_frame();
            return (held > limit).then(|| PeerError::FrameTooLong { limit }.into());
        }
        self.over_counted_bound(held)
    }

    /// Closes the connection if the default collector holds more than its bound (see
    /// [`over_collector_bound`](Self::over_collector_bound)); whether it did.
    #[inline]
    pub(super) fn close_if_over_collector_bound(&mut self) -> bool {
        let Some(error) = self.over_collector_bound() else {
            return false;
        };
        crate::trace::event!(info, %error, "frame over its bound");
        self.close_because(CloseReason::Error(error));
        true
    }

    /// Traces the queue crossing its high water mark during a callback that began with the
    /// connection writable.
    #[cfg(feature = "tracing")]
    pub(super) fn trace_backpressure_on(&self, was_writable: bool) {
        if was_writable && !self.outbox.is_writable() {
            tracing::debug!(queued = self.outbox.cost(), "backpressure on");
        }
    }

    #[inline(never)]
    fn over_counted_bound(&self, held: usize) -> Option<Error> {
        match self.framer.count_left() {
            Some(remaining) if remaining > 0 || self.framer.owes_terminator() => {
                let limit = self.framer.max_counted_frame();
                let count = (held as u64).saturating_add(remaining);
                (count > limit).then_some(Misuse::CountOverLimit { count, limit }.into())
            }
            // A count that ran down collects what follows as data, as Python does: the peer's
            // bytes, bound by the line limit.
            _ => {
                let limit = self.framer.max_frame();
                (held > limit).then(|| PeerError::FrameTooLong { limit }.into())
            }
        }
    }

    /// No frame is being timed: after a frame reached its terminator (the next one is timed
    /// from its own first byte), when the deadline fired, or on close.
    #[inline]
    pub(super) fn clear_frame_deadline(&mut self) {
        if let Some(clock) = &mut self.frame_clock {
            clock.deadline = None;
        }
    }

    pub(super) fn frame_deadline(&self) -> Option<Instant> {
        self.frame_clock.as_ref().and_then(|c| c.deadline)
    }

    /// Whether input may be handed to the protocol now.
    pub(super) fn may_deliver(&self) -> bool {
        self.state == State::Open
            && !self.paused_by_protocol
            && self.tls != TlsPhase::Requested
            && self.outbox.is_writable()
    }
}

/// The frame timeout of a connection, and the deadline of the frame in progress.
#[derive(Debug)]
pub(super) struct FrameClock {
    pub(super) timeout: Duration,
    /// When the frame in progress must be finished (set from its first byte).
    pub(super) deadline: Option<Instant>,
}

impl FrameClock {
    pub(super) fn new(timeout: Option<Duration>) -> Option<Box<Self>> {
        timeout.map(|timeout| {
            Box::new(Self {
                timeout,
                deadline: None,
            })
        })
    }
}

impl<P: Protocol> Chat<P> {
    pub(super) fn is_live(&self) -> bool {
        matches!(self.core.state, State::Open | State::Closing)
    }

    /// Keeps the frame deadline: armed from the first byte of a frame left unfinished after
    /// delivery (a finished frame clears it: [`Core::clear_frame_deadline`]), cleared once nothing is
    /// unfinished or while input is held back (backpressure is not the peer's delay).
    pub(super) fn time_frame(&mut self, now: Instant) {
        let core = &mut self.core;
        if core.frame_clock.is_none() {
            return;
        }
        let unfinished = core.framer.unprocessed_len() > 0
            || core.framer.frame_len() > 0
            || core.incoming.len() > 0;
        let timed = unfinished && core.may_deliver() && !core.read_eof;
        let Some(clock) = core.frame_clock.as_deref_mut() else {
            return;
        };
        if !timed {
            clock.deadline = None;
        } else if clock.deadline.is_none() {
            clock.deadline = now.checked_add(clock.timeout);
        }
    }

    pub(super) fn notify_closed(&mut self) {
        if let Some(closed) = self.core.closed.as_deref_mut() {
            if !closed.notified {
                closed.notified = true;
                self.protocol.closed(&closed.reason);
            }
        }
    }
}
