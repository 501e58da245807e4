//! The connection state machine: Python's `async_chat`, joining a [`Framer`], an [`Outbox`], a
//! [`Protocol`] and deadlines, with no I/O and no clock.
//!
//! ```text
//!                handle_connected          close_when_done()          output flushed
//!  Connecting ────────────────────▶ Open ─────────────────▶ Closing ───────────────▶ Closed
//!    │   │                           │                        ▲  │                     ▲
//!    │   └─── handle_connected, close_when_done() pending ────┘  │ close(), error      │
//!    │                               │ close(), error, timeout   │                     │
//!    │ handle_error                  │                           │                     │
//!    └───────────────────────────────┴───────────────────────────┴─────────────────────┘
//! ```
//!
//! - **Connecting**: a client socket whose connect has not completed. Nothing is delivered; pushes
//!   queue up and leave once connected (as in Python). A `close_when_done()` while connecting
//!   takes the connection straight to Closing when the connect completes.
//! - **Open**: frames are delivered to the protocol; output is written.
//! - **Closing**: `close_when_done` was called. Queued output is flushed; input is still read (so
//!   the peer is not reset while we write) but discarded, and no input callback runs.
//! - **Closed**: nothing more happens; [`Protocol::closed`] has run once with the reason.
//!
//! The module is split by concern: `protocol` (the callbacks), `context` (what they can do),
//! `state` (every transition and gate, with the machines they belong to), `delivery` (input to
//! the protocol), `frame` (the bytes handed over), `collector` (the default collector),
//! `config` and `reason`.

use std::fmt;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::error::{Misuse, PeerError};
use crate::framer::Framer;
use crate::outbox::Outbox;
use crate::timers::Timers;

mod collector;
mod config;
mod context;
mod delivery;
mod frame;
mod protocol;
mod reason;
mod state;

pub use config::{Config, DEFAULT_HANDSHAKE_TIMEOUT};
pub use context::Context;
pub use frame::Frame;
pub use protocol::{Protocol, Timer};
pub use reason::{CloseReason, Interest};
pub use state::State;

use collector::Incoming;
use state::{Core, FrameClock};

/// Default number of bytes a driver reads per call, at most: Python's `ac_in_buffer_size`.
pub const DEFAULT_READ_SIZE: usize = 64 * 1024;

/// The first reads of a connection reserve this much; see [`Chat::handle_read_with`].
pub const MIN_READ: usize = 4 * 1024;

/// Default [`Config::turn_budget`]: one full read. A connection that always has more to read or
/// write yields after this many bytes each way, so one pipelining peer holds its driver's thread
/// for a bounded time (64 KiB of 14-byte Redis PINGs is some 4 700 commands, well under a
/// millisecond); a bulk transfer yields every 64 KiB, which costs it no measurable CPU (the
/// [limits](crate::manual::limits) chapter has the figures).
pub const DEFAULT_TURN_BUDGET: usize = DEFAULT_READ_SIZE;

/// A connection: a [`Protocol`] with its framer, output queue and deadlines, driven by plain
/// method calls (the quinn-proto style).
///
/// The driver reports what happened — [`handle_connected`](Self::handle_connected),
/// [`handle_read`](Self::handle_read) / [`handle_read_with`](Self::handle_read_with),
/// [`handle_eof`](Self::handle_eof), [`handle_written`](Self::handle_written),
/// [`handle_error`](Self::handle_error), [`handle_timeout`](Self::handle_timeout) — and asks what
/// to do: [`interest`](Self::interest), [`poll_transmit`](Self::poll_transmit),
/// [`poll_timeout`](Self::poll_timeout), [`is_closed`](Self::is_closed). Time is always an
/// argument; the chat never reads a clock. The [`testing`](crate::testing) harness drives one
/// without sockets.
///
/// ```
/// use std::io::IoSlice;
/// use std::time::Instant;
/// use asynchat_core::{Bytes, Chat, Context, Frame, Protocol, Terminator};
///
/// struct Upper;
/// impl Protocol for Upper {
///     fn first_terminator(&self) -> Terminator { "\n".into() }
///     fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
///         ctx.push(line.to_ascii_uppercase());
///         ctx.push("\n");
///     }
/// }
///
/// let now = Instant::now();
/// let mut chat = Chat::new(Upper)?;
/// chat.handle_connected(now);
/// chat.handle_read(now, b"hello\nwor");
/// let mut slices = [IoSlice::new(&[]); 16];
/// let n = chat.poll_transmit(&mut slices);
/// let written: Vec<u8> = slices[..n].iter().flat_map(|s| s.to_vec()).collect();
/// assert_eq!(written, b"HELLO\n");
/// chat.handle_written(written.len());
/// assert!(!chat.interest().writable);
/// # Ok::<(), asynchat_core::Misuse>(())
/// ```
pub struct Chat<P> {
    protocol: P,
    core: Core,
}

impl<P: fmt::Debug> fmt::Debug for Chat<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chat")
            .field("protocol", &self.protocol)
            .field("state", &self.core.state)
            .field("core", &self.core)
            .finish()
    }
}

/// What is left of a chat taken apart for a protocol upgrade: see [`Chat::into_parts`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Parts<P> {
    /// The protocol.
    pub protocol: P,
    /// Bytes received and never delivered.
    pub unprocessed: Bytes,
    /// Output not yet written.
    pub outbox: Outbox,
}

impl<P: Protocol> Chat<P> {
    /// A connection in state [`State::Connecting`], with the default [`Config`].
    ///
    /// Fails as [`with_config`](Self::with_config) does.
    pub fn new(protocol: P) -> Result<Self, Misuse> {
        Self::with_config(protocol, &Config::default())
    }

    /// A connection in state [`State::Connecting`] with the given limits.
    ///
    /// Fails with [`Misuse::EmptyDelimiter`] if the protocol's first terminator is empty. The
    /// protocol hears of it first, through [`Protocol::closed`] with
    /// [`CloseReason::Error`] of that misuse: every protocol a connection was made for hears
    /// of its end exactly once, a connection refused for it included.
    pub fn with_config(mut protocol: P, config: &Config) -> Result<Self, Misuse> {
        let framer = match Framer::unbounded(protocol.first_terminator()) {
            Ok(framer) => framer,
            Err(misuse) => {
                protocol.closed(&CloseReason::Error(misuse.into()));
                return Err(misuse);
            }
        };
        let framer = framer
            .with_max_frame(config.max_frame)
            .with_max_counted_frame(config.max_counted_frame)
            .with_over_long_policy(config.over_long);
        let outbox = Outbox::new()
            .with_water_marks(config.low_water, config.high_water)
            .with_limit(config.outbox_limit)
            .with_coalescing(config.coalesce_below);
        Ok(Self {
            protocol,
            core: Core {
                framer,
                outbox,
                incoming: Incoming::default(),
                state: State::Connecting,
                closed: None,
                read_eof: false,
                paused_by_protocol: false,
                tls: state::TlsPhase::Plain,
                read_size: u32::try_from(config.read_size.max(1)).unwrap_or(u32::MAX),
                next_read: u32::try_from(config.read_size.clamp(1, MIN_READ)).unwrap_or(u32::MAX),
                turn_budget: u32::try_from(config.turn_budget.max(1)).unwrap_or(u32::MAX),
                idle_timeout: state::IdleTimeout::new(config.idle_timeout),
                idle_deadline: None,
                frame_clock: FrameClock::new(config.frame_timeout),
                timers: Timers::default(),
                last_now: None,
            },
        })
    }

    /// The connection is established: [`State::Open`], [`Protocol::connected`] runs. Ignored
    /// unless connecting.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.core.state != State::Connecting {
            return;
        }
        self.core.state = State::Open;
        self.core.touch(now);
        self.callback(now, |p, ctx| p.connected(ctx));
        if self.core.state == State::Open && self.core.outbox.is_closing() {
            self.core.state = State::Closing;
        }
        self.core.finish_if_flushed();
        self.dispatch(now);
    }

    /// Bytes arrived from the peer (copied into the framer). Frames are delivered to the protocol
    /// before this returns, unless backpressure holds them.
    pub fn handle_read(&mut self, now: Instant, data: &[u8]) {
        if !self.takes_input() || data.is_empty() {
            return;
        }
        // Cannot fail: takes_input() means the framer has not seen EOF.
        let _ = self.core.framer.feed(data);
        self.after_read(now);
        self.core.framer.release_if_delivered();
    }

    /// Reads straight into the framer's buffer (no copy): `read` gets the buffer, with spare
    /// capacity reserved, and must only append to it (see [`Framer::read_with`]). Returns `None`,
    /// without calling `read`, when the connection takes no more input (after EOF, or closed).
    ///
    /// The reservation adapts: it starts at [`MIN_READ`], doubles while reads fill it (bulk
    /// transfers reach [`Config::read_size`] in a few reads) and halves while they come back
    /// under a quarter full, so chatty connections use small buffers the allocator recycles
    /// cheaply instead of a fresh 64 KiB one per read.
    pub fn handle_read_with<R>(
        &mut self,
        now: Instant,
        read: impl FnOnce(&mut BytesMut) -> R,
    ) -> Option<R> {
        let result = self.handle_read_kept(now, read);
        self.core.framer.release_if_delivered();
        result
    }

    /// [`handle_read_with`](Self::handle_read_with), keeping the read buffer even when
    /// everything in it was delivered: for `driver::poll_chat`, which reads again at once until
    /// the stream says `Pending`, and then calls [`release_read_buffer`](Self::release_read_buffer).
    /// The read that finds nothing then costs no trip to the spare buffers and back.
    pub(crate) fn handle_read_kept<R>(
        &mut self,
        now: Instant,
        read: impl FnOnce(&mut BytesMut) -> R,
    ) -> Option<R> {
        if !self.takes_input() {
            return None;
        }
        let before = self.core.framer.unprocessed_len();
        let reserve = self.core.next_read as usize;
        let result = self.core.framer.read_with_kept(reserve, read).ok()?;
        let got = self.core.framer.unprocessed_len().saturating_sub(before);
        // Adapt the next reservation to the traffic: small for chatty request/response (a small
        // buffer comes from the allocator's caches), large for bulk transfers.
        if got >= reserve {
            self.core.next_read = self
                .core
                .next_read
                .saturating_mul(2)
                .min(self.core.read_size);
        } else if got > 0 && got < reserve / 4 {
            self.core.next_read =
                (self.core.next_read / 2).max((MIN_READ as u32).min(self.core.read_size));
        }
        if self.core.framer.unprocessed_len() != before {
            self.after_read(now);
        }
        Some(result)
    }

    /// The memory the read buffer holds, in bytes.
    #[cfg(test)]
    pub(crate) fn read_buffer_capacity(&self) -> usize {
        self.core.framer.capacity()
    }

    /// Gives up the read buffer if everything in it was delivered (see
    /// [`handle_read_kept`](Self::handle_read_kept)).
    pub(crate) fn release_read_buffer(&mut self) {
        self.core.framer.release_if_delivered();
    }

    fn takes_input(&self) -> bool {
        matches!(self.core.state, State::Open | State::Closing) && !self.core.read_eof
    }

    fn after_read(&mut self, now: Instant) {
        self.core.touch(now);
        if self.core.state == State::Closing {
            // Draining: read so the peer is not reset mid-flush, but deliver nothing.
            drop(self.core.framer.take_unprocessed());
            return;
        }
        self.dispatch(now);
    }

    /// The peer ended its side of the stream (a read returned 0). Pending input is delivered,
    /// then [`Protocol::peer_closed`] runs. Queued output is still flushed.
    pub fn handle_eof(&mut self, now: Instant) {
        if !self.takes_input() {
            return;
        }
        self.core.read_eof = true;
        self.core.last_now = Some(now);
        self.core.framer.feed_eof();
        if self.core.state == State::Closing {
            self.core.finish_if_flushed();
            self.notify_closed();
            return;
        }
        self.dispatch(now);
    }

    /// Whether the protocol asked for TLS ([`Context::start_tls`]) and everything to be written
    /// in plaintext before it has been: the driver now puts TLS in place over its stream, then
    /// calls [`handle_tls_started`](Self::handle_tls_started).
    #[must_use]
    pub fn wants_tls(&self) -> bool {
        // Closing too: a graceful close asked for meanwhile flushes the rest inside TLS.
        self.core.tls == state::TlsPhase::Requested
            && matches!(self.core.state, State::Open | State::Closing)
            && self.core.outbox.barrier_left() == Some(0)
    }

    /// TLS is in place over the stream, after [`wants_tls`](Self::wants_tls): input is read
    /// and delivered again, inside TLS, and the protocol hears [`Protocol::tls_started`].
    pub fn handle_tls_started(&mut self, now: Instant) {
        if !self.wants_tls() {
            // Not asked for, or the plaintext before the switch is not all written yet.
            return;
        }
        self.core.tls = state::TlsPhase::Started;
        self.core.outbox.lift_barrier();
        crate::trace::event!(debug, "TLS started in band");
        self.callback(now, |p, ctx| p.tls_started(ctx));
        self.dispatch(now);
    }

    /// `n` bytes of the last [`poll_transmit`](Self::poll_transmit) batch were written.
    pub fn handle_written(&mut self, n: usize) {
        let was_writable = self.core.outbox.is_writable();
        self.core.outbox.advance(n);
        self.core.finish_if_flushed();
        if !was_writable && self.core.outbox.is_writable() {
            crate::trace::event!(debug, queued = self.core.outbox.cost(), "backpressure off");
            if let Some(now) = self.core.last_now {
                // Backpressure lifted: deliver what was held back.
                self.dispatch(now);
                return;
            }
        }
        self.notify_closed();
    }

    /// The socket failed (connect refused, reset, broken pipe...): the connection closes with
    /// [`CloseReason::Io`] and queued output is dropped.
    ///
    /// An error that carries a [`TlsError`](crate::TlsError) (as the TLS layer's do) is the
    /// peer's: the reason is [`CloseReason::Error`] with [`PeerError::Tls`], counted with the
    /// peer's other errors.
    pub fn handle_error(&mut self, error: io::Error) {
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<crate::TlsError>())
            .cloned();
        let reason = match tls {
            Some(tls) => CloseReason::Error(PeerError::Tls(tls).into()),
            None => CloseReason::Io(Arc::new(error)),
        };
        self.core.close_because(reason);
        self.notify_closed();
    }

    /// Time passed: fires every deadline at or before `now` ([`Protocol::timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.last_now = Some(now);
        if let Some(at) = self.core.idle_deadline {
            if at <= now && self.is_live() {
                crate::trace::event!(debug, "idle timeout");
                self.core.idle_deadline = self.core.idle_timeout.deadline(now);
                self.callback(now, |p, ctx| p.timeout(ctx, Timer::Idle));
            }
        }
        if let Some(at) = self.core.frame_deadline() {
            if at <= now && self.core.state == State::Open {
                crate::trace::event!(info, "frame timeout: a frame unfinished for too long");
                self.core.clear_frame_deadline();
                self.callback(now, |p, ctx| p.timeout(ctx, Timer::Frame));
                if self.core.state == State::Open {
                    self.core.close_because(CloseReason::FrameTimedOut);
                }
            }
        }
        let round = self.core.timers.round();
        while self.is_live() {
            let Some(id) = self.core.timers.pop_expired(now, round) else {
                break;
            };
            self.callback(now, |p, ctx| p.timeout(ctx, Timer::Custom(id)));
        }
        self.core.finish_if_flushed();
        self.dispatch(now);
    }

    /// Runs `f` with the protocol and a context, as if in a callback: how a driver delivers
    /// something from outside the connection (a message pushed from another connection or
    /// thread, a shutdown request). Ignored once closed.
    pub fn with_context<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut P, &mut Context<'_>) -> R,
    ) -> Option<R> {
        if self.core.state == State::Closed {
            return None;
        }
        let result = self.callback(now, f);
        self.core.finish_if_flushed();
        self.dispatch(now);
        Some(result)
    }

    /// Writes everything queued, then closes (driver-side graceful shutdown).
    pub fn close_when_done(&mut self) {
        self.core.close_when_done();
        self.notify_closed();
    }

    /// Closes now, dropping queued output ([`CloseReason::Aborted`]).
    pub fn close(&mut self) {
        self.core.close_because(CloseReason::Aborted);
        self.notify_closed();
    }

    /// What to wait for on the socket.
    #[must_use]
    pub fn interest(&self) -> Interest {
        let core = &self.core;
        let pending_output = !core.outbox.is_empty();
        match core.state {
            State::Connecting => Interest {
                readable: false,
                writable: true,
            },
            State::Open => Interest {
                readable: !core.read_eof && core.may_deliver(),
                // Waiting for the switch to TLS: what is queued goes out after it.
                writable: pending_output && core.outbox.barrier_left() != Some(0),
            },
            State::Closing => Interest {
                readable: !core.read_eof,
                writable: pending_output && core.outbox.barrier_left() != Some(0),
            },
            State::Closed => Interest::default(),
        }
    }

    /// Fills `dst` with output for one vectored write and returns how many slices were filled;
    /// report the bytes written with [`handle_written`](Self::handle_written). Nothing while
    /// connecting or closed.
    #[must_use]
    pub fn poll_transmit<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        match self.core.state {
            State::Open => self.core.outbox.poll_slices(dst),
            State::Closing => {
                // A producer that has run out is only found out by pulling it. If it was the
                // last output, the flush is over now: no write will follow to notice it, and
                // the connection would wait in `Closing` for input it discards.
                self.core.outbox.pull_front(dst.len());
                self.core.finish_if_flushed();
                self.notify_closed();
                if self.core.state == State::Closed {
                    return 0;
                }
                self.core.outbox.poll_slices(dst)
            }
            State::Connecting | State::Closed => 0,
        }
    }

    /// Offers the output for one vectored write (up to 64 slices) to `write` and returns what it
    /// returns, or `None` if there is nothing to write now; report the bytes written with
    /// [`handle_written`](Self::handle_written).
    ///
    /// What a driver should call rather than [`poll_transmit`](Self::poll_transmit): the usual
    /// batch (a buffer or a few) is gathered into a small array, and a 64-slice one, a kilobyte
    /// to clear, is only set up when there are more slices than that.
    ///
    /// ```
    /// use asynchat_core::{Chat, Context, Frame, Protocol, Terminator};
    /// use std::io::Write;
    /// # struct Hello;
    /// # impl Protocol for Hello {
    /// #     fn first_terminator(&self) -> Terminator { "\n".into() }
    /// #     fn connected(&mut self, ctx: &mut Context<'_>) { ctx.push("hello\n"); }
    /// #     fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
    /// # }
    /// let mut chat = Chat::new(Hello)?;
    /// chat.handle_connected(std::time::Instant::now());
    /// let mut socket = Vec::new();
    /// while let Some(written) = chat.transmit_with(|slices| socket.write_vectored(slices)) {
    ///     chat.handle_written(written?);
    /// }
    /// assert_eq!(socket, b"hello\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transmit_with<R>(&mut self, write: impl FnOnce(&[IoSlice<'_>]) -> R) -> Option<R> {
        const FEW: usize = 4;
        const MANY: usize = 64;
        {
            let mut few = [IoSlice::new(&[]); FEW];
            let n = self.poll_transmit(&mut few);
            if n == 0 {
                return None;
            }
            if n < FEW {
                return Some(write(&few[..n]));
            }
        }
        let mut many = [IoSlice::new(&[]); MANY];
        let n = self.poll_transmit(&mut many);
        Some(write(&many[..n]))
    }

    /// The earliest deadline, if any: call [`handle_timeout`](Self::handle_timeout) then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_live() {
            return None;
        }
        self.core
            .idle_deadline
            .into_iter()
            .chain(self.core.frame_deadline())
            .chain(self.core.timers.next())
            .min()
    }

    /// Bytes to read per call ([`Config::read_size`]).
    #[must_use]
    pub fn read_size(&self) -> usize {
        self.core.read_size as usize
    }

    /// Bytes a driver may read, and bytes it may write, for this connection in one turn
    /// ([`Config::turn_budget`]).
    #[must_use]
    pub fn turn_budget(&self) -> usize {
        self.core.turn_budget as usize
    }

    /// Whether the connection is finished: drop the socket (after a write-side shutdown when the
    /// reason [`is_graceful`](CloseReason::is_graceful)).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.core.state == State::Closed
    }

    /// The connection's state.
    #[must_use]
    pub fn state(&self) -> State {
        self.core.state
    }

    /// Why the connection closed, once closed.
    #[must_use]
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.core.closed.as_deref().map(|closed| &closed.reason)
    }

    /// Bytes queued for the peer and not yet written.
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.core.outbox.queued_bytes()
    }

    /// What the queued output costs in memory, as the water marks count it
    /// ([`Outbox::cost`]).
    #[must_use]
    pub fn queued_cost(&self) -> usize {
        self.core.outbox.cost()
    }

    /// The protocol.
    #[must_use]
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// The protocol, mutably.
    pub fn protocol_mut(&mut self) -> &mut P {
        &mut self.protocol
    }

    /// Takes the connection apart for a protocol upgrade: the protocol, every byte received and
    /// not delivered, and the output not yet written. No callback runs.
    pub fn into_parts(mut self) -> Parts<P> {
        // A switch to TLS that will not happen now: the new owner writes as it likes.
        self.core.outbox.lift_barrier();
        Parts {
            unprocessed: self.core.framer.take_unprocessed(),
            protocol: self.protocol,
            outbox: self.core.outbox,
        }
    }
}

#[cfg(test)]
mod tests;
