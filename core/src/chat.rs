//! The connection state machine: Python's `async_chat`, joining a [`Framer`], an [`Outbox`], a
//! [`Protocol`] and deadlines, with no I/O and no clock.
//!
//! ```text
//!                handle_connected           close_when_done()          output flushed
//!  Connecting ─────────────────────▶ Open ──────────────────▶ Closing ───────────────▶ Closed
//!      │                              │                         │                        ▲
//!      │ handle_error                 │ close(), error, timeout │ close(), error         │
//!      └──────────────────────────────┴─────────────────────────┴────────────────────────┘
//! ```
//!
//! - **Connecting**: a client socket whose connect has not completed. Nothing is delivered; pushes
//!   queue up and leave once connected (as in Python).
//! - **Open**: frames are delivered to the protocol; output is written.
//! - **Closing**: `close_when_done` was called. Queued output is flushed; input is still read (so
//!   the peer is not reset while we write) but discarded, and no input callback runs.
//! - **Closed**: nothing more happens; [`Protocol::closed`] has run once with the reason.

use std::fmt;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Misuse, PeerError};
use crate::framer::{Event, Framer, OverLongPolicy, DEFAULT_MAX_COUNTED_FRAME, DEFAULT_MAX_FRAME};
use crate::outbox::{Outbox, DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, DEFAULT_OUTBOX_LIMIT};
use crate::producer::Producer;
use crate::terminator::Terminator;
use crate::timers::Timers;

/// Default number of bytes a driver reads per call, at most: Python's `ac_in_buffer_size`.
pub const DEFAULT_READ_SIZE: usize = 64 * 1024;

/// The first reads of a connection reserve this much; see [`Chat::handle_read_with`].
pub const MIN_READ: usize = 4 * 1024;

/// Default [`Config::turn_budget`]: one full read. A connection that always has more to read or
/// write yields after this many bytes each way, so one pipelining peer holds its driver's thread
/// for a bounded time (64 KiB of 14-byte Redis PINGs is some 4 700 commands, well under a
/// millisecond); a bulk transfer yields every 64 KiB, which costs it no measurable CPU
/// (BENCHMARKS.md, "Fairness and bounds").
pub const DEFAULT_TURN_BUDGET: usize = DEFAULT_READ_SIZE;

/// A line- or terminator-based protocol: the `async_chat` callbacks.
///
/// Only [`first_terminator`](Self::first_terminator) and
/// [`found_terminator`](Self::found_terminator) are required: by default incoming data is
/// collected for you and handed to `found_terminator` as one frame.
///
/// ```
/// use asynchat_core::{Bytes, Context, Protocol, Terminator};
///
/// /// Answers every line with its length.
/// struct LineLength;
///
/// impl Protocol for LineLength {
///     fn first_terminator(&self) -> Terminator {
///         Terminator::from("\n")
///     }
///     fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Bytes) {
///         ctx.push(format!("{}\n", line.len()));
///     }
/// }
/// ```
pub trait Protocol {
    /// The terminator of the first frame. There is no undefined starting state.
    fn first_terminator(&self) -> Terminator;

    /// The connection is established (accepted, or a client's connect completed).
    fn connected(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// Frame content arrived (never terminator bytes). The default collects it, bounded by
    /// `max_frame`, and hands it to [`found_terminator`](Self::found_terminator); override it to
    /// stream large frames instead of buffering them (call [`Context::collect`] to keep the
    /// default behaviour for some frames).
    fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Bytes) {
        ctx.collect(data);
    }

    /// The current frame ended. `frame` holds what the default collector gathered (empty if
    /// [`collect_incoming_data`](Self::collect_incoming_data) was overridden). Call
    /// [`Context::set_terminator`] here to frame the following bytes differently.
    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Bytes);

    /// Whether whole frames may come through [`found_frame`](Self::found_frame) as borrowed
    /// bytes. The default, `false`, delivers every frame as above.
    ///
    /// Worth it for protocols of short frames that do not keep them (a line-based command
    /// protocol): a frame received whole is then lent straight from the receive buffer, instead
    /// of becoming a reference-counted [`Bytes`] (two atomic operations per frame).
    #[inline]
    fn borrowed_frames(&self) -> bool {
        false
    }

    /// A whole frame (terminator excluded), lent: only called if
    /// [`borrowed_frames`](Self::borrowed_frames) says so, and only for delimiter frames that
    /// were whole in the receive buffer. Every other frame (one that arrived in pieces, a count,
    /// the end of the stream) still comes through
    /// [`collect_incoming_data`](Self::collect_incoming_data) and
    /// [`found_terminator`](Self::found_terminator), so both must do the same thing.
    /// [`Context::set_terminator`] works here as in `found_terminator`, and
    /// [`Context::take_unprocessed`] returns the bytes after this frame.
    ///
    /// This is called once per frame: for a short body, `#[inline]` on it lets the compiler
    /// build it into the delivery loop (a tenth less work per line for the example echo).
    ///
    /// The default hands a copy to `found_terminator`.
    fn found_frame(&mut self, ctx: &mut Context<'_>, frame: &[u8]) {
        self.found_terminator(ctx, Bytes::copy_from_slice(frame));
    }

    /// The peer ended its side of the stream; every byte before the end has been delivered.
    /// `unterminated` counts the bytes of a last frame that never got its terminator (their data
    /// is in [`Context::take_incoming`] with the default collector).
    ///
    /// The default is [`Context::close_when_done`]: queued output is still flushed (Python drops
    /// it). Override to keep writing on a half-closed connection.
    fn peer_closed(&mut self, ctx: &mut Context<'_>, unterminated: u64) {
        let _ = unterminated;
        ctx.close_when_done();
    }

    /// A frame exceeded `max_frame` and was skipped
    /// ([`OverLongPolicy::Skip`] only; with the default policy the
    /// connection closes with [`PeerError::FrameTooLong`]). The default does nothing: framing
    /// carries on with the next frame.
    fn frame_too_long(&mut self, ctx: &mut Context<'_>, limit: usize) {
        let _ = (ctx, limit);
    }

    /// A deadline passed. The default closes the connection on [`Timer::Idle`] with
    /// [`CloseReason::TimedOut`], on [`Timer::Frame`] with [`CloseReason::FrameTimedOut`], and
    /// ignores custom timers.
    ///
    /// The frame timeout always ends the connection: an override may answer first (HTTP's
    /// `408`, then `close_when_done`); if it leaves the connection open, it closes with
    /// [`CloseReason::FrameTimedOut`] all the same.
    fn timeout(&mut self, ctx: &mut Context<'_>, timer: Timer) {
        match timer {
            Timer::Idle => ctx.close_because(CloseReason::TimedOut),
            Timer::Frame => ctx.close_because(CloseReason::FrameTimedOut),
            Timer::Custom(_) => {}
        }
    }

    /// The connection is closed; called exactly once, last.
    fn closed(&mut self, reason: &CloseReason) {
        let _ = reason;
    }
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timer {
    /// No input arrived for the idle timeout ([`Context::set_idle_timeout`]).
    Idle,
    /// A frame begun was not finished within the frame timeout
    /// ([`Config::frame_timeout`], [`Context::set_frame_timeout`]).
    Frame,
    /// A deadline set with [`Context::set_timer`] under this id.
    Custom(u32),
}

/// Where the connection is in its life; see the [module docs](self) for the diagram.
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

/// Why a connection closed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseReason {
    /// `close_when_done()` completed: everything queued was written. Graceful.
    Done,
    /// The peer ended its side first, then everything queued was written. Graceful.
    PeerClosed,
    /// The protocol called `close()`: queued output was dropped.
    Aborted,
    /// An idle timeout expired (the default reaction to [`Timer::Idle`]).
    TimedOut,
    /// A frame was not finished within the frame timeout ([`Timer::Frame`]): a peer sending
    /// a request too slowly (a slow loris).
    FrameTimedOut,
    /// Bad input, a limit, or API misuse.
    Error(Error),
    /// The driver reported an I/O error (connection refused, reset, broken pipe...).
    Io(Arc<io::Error>),
}

impl CloseReason {
    /// Whether the close was orderly and all output was delivered to the socket: the driver
    /// should then shut down the write side (FIN) rather than just drop the socket.
    #[must_use]
    pub fn is_graceful(&self) -> bool {
        matches!(self, Self::Done | Self::PeerClosed)
    }
}

impl PartialEq for CloseReason {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Error(a), Self::Error(b)) => a == b,
            (Self::Io(a), Self::Io(b)) => a.kind() == b.kind() && a.to_string() == b.to_string(),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done => f.write_str("closed after flushing output"),
            Self::PeerClosed => f.write_str("peer closed"),
            Self::Aborted => f.write_str("closed by the protocol"),
            Self::TimedOut => f.write_str("idle timeout"),
            Self::FrameTimedOut => f.write_str("frame not finished within the frame timeout"),
            Self::Error(e) => e.fmt(f),
            Self::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// What the driver should wait for on the socket: Python's `readable()` / `writable()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    /// Read from the socket (false while backpressure holds, after EOF, and when closed).
    pub readable: bool,
    /// Write to the socket (output is pending, or a connect is in progress).
    pub writable: bool,
}

/// Limits and sizes of a [`Chat`].
///
/// # Security
///
/// Every limit is finite by default: `max_frame` 64 KiB (delimited frames, and frames gathered by
/// the default collector), output water marks 32/64 KiB, output hard limit 64 MiB. No idle timeout
/// is set by default: servers facing the Internet should set one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Longest delimited or until-EOF frame accepted, in bytes ([`Framer::max_frame`]): the
    /// line limit, a bound on what a peer can make a connection hold.
    pub max_frame: usize,
    /// Largest counted frame the default collector holds, in bytes
    /// ([`DEFAULT_MAX_COUNTED_FRAME`], 16 MiB). A count is the protocol's choice: one over
    /// this bound closes the connection with [`Misuse::CountOverLimit`] as soon as the
    /// collector would hold its first byte. A protocol that streams a count (overriding
    /// [`Protocol::collect_incoming_data`]) is not bound by it.
    pub max_counted_frame: u64,
    /// What to do with an over-long frame.
    pub over_long: OverLongPolicy,
    /// Output queue size at or below which reading resumes.
    pub low_water: usize,
    /// Output queue size above which reading stops.
    pub high_water: usize,
    /// Output queue size that may not be exceeded ([`Error::OutboxFull`]).
    pub outbox_limit: usize,
    /// The most bytes a driver reads per call. Reads start smaller and grow while they fill
    /// their buffer (see [`Chat::handle_read_with`]).
    pub read_size: usize,
    /// Close (by default) after this long without input.
    pub idle_timeout: Option<Duration>,
    /// Close after a frame has taken this long from its first byte without reaching its
    /// terminator, however steadily its bytes trickle in (each byte re-arms the idle timeout;
    /// this one it does not): a request-head or slow-client timeout. Counted only while the
    /// connection takes input (not while backpressure holds it). `None` (the default): none.
    pub frame_timeout: Option<Duration>,
    /// Copy pushes shorter than this together instead of sending each as its own slice
    /// ([`Outbox::with_coalescing`]); 0 (the default) never copies.
    pub coalesce_below: usize,
    /// Fairness: the most bytes a driver reads, and the most it writes, for one connection in
    /// one turn (one wake-up of its task, one readiness event of its loop) before the
    /// connection yields to the others and resumes in a later turn. Frames delivered per turn
    /// are bounded by the bytes read. See [`DEFAULT_TURN_BUDGET`].
    pub turn_budget: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            max_counted_frame: DEFAULT_MAX_COUNTED_FRAME,
            over_long: OverLongPolicy::Fail,
            low_water: DEFAULT_LOW_WATER,
            high_water: DEFAULT_HIGH_WATER,
            outbox_limit: DEFAULT_OUTBOX_LIMIT,
            read_size: DEFAULT_READ_SIZE,
            idle_timeout: None,
            frame_timeout: None,
            coalesce_below: 0,
            turn_budget: DEFAULT_TURN_BUDGET,
        }
    }
}

impl Config {
    /// Sets [`max_frame`](Self::max_frame).
    #[must_use]
    pub fn max_frame(mut self, n: usize) -> Self {
        self.max_frame = n;
        self
    }
    /// Sets [`max_counted_frame`](Self::max_counted_frame).
    #[must_use]
    pub fn max_counted_frame(mut self, n: u64) -> Self {
        self.max_counted_frame = n;
        self
    }
    /// Sets [`over_long`](Self::over_long).
    #[must_use]
    pub fn over_long(mut self, policy: OverLongPolicy) -> Self {
        self.over_long = policy;
        self
    }
    /// Sets the output water marks.
    #[must_use]
    pub fn water_marks(mut self, low: usize, high: usize) -> Self {
        self.low_water = low;
        self.high_water = high;
        self
    }
    /// Sets [`outbox_limit`](Self::outbox_limit).
    #[must_use]
    pub fn outbox_limit(mut self, n: usize) -> Self {
        self.outbox_limit = n;
        self
    }
    /// Sets [`read_size`](Self::read_size) (at least 1).
    #[must_use]
    pub fn read_size(mut self, n: usize) -> Self {
        self.read_size = n.max(1);
        self
    }
    /// Sets [`idle_timeout`](Self::idle_timeout).
    #[must_use]
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }
    /// Sets [`frame_timeout`](Self::frame_timeout).
    #[must_use]
    pub fn frame_timeout(mut self, d: Option<Duration>) -> Self {
        self.frame_timeout = d;
        self
    }
    /// Sets [`coalesce_below`](Self::coalesce_below).
    #[must_use]
    pub fn coalesce_below(mut self, n: usize) -> Self {
        self.coalesce_below = n;
        self
    }
    /// Sets [`turn_budget`](Self::turn_budget) (at least 1).
    #[must_use]
    pub fn turn_budget(mut self, n: usize) -> Self {
        self.turn_budget = n.max(1);
        self
    }
}

/// The default collector: one `Bytes` kept as it is (zero-copy), concatenated only when a frame
/// came in several pieces.
#[derive(Default)]
enum Incoming {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("len", &self.len())
            .finish()
    }
}

impl Incoming {
    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(b) => b.len(),
            Self::Many(m) => m.len(),
        }
    }

    fn push(&mut self, data: Bytes) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(data),
            Self::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + data.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                Self::Many(all)
            }
            Self::Many(mut all) => {
                all.extend_from_slice(&data);
                Self::Many(all)
            }
        };
    }

    fn take(&mut self) -> Bytes {
        match std::mem::take(self) {
            Self::Empty => Bytes::new(),
            Self::One(b) => b,
            Self::Many(m) => m.freeze(),
        }
    }
}

/// Everything of a connection but the protocol, so that callbacks can borrow both.
#[derive(Debug)]
struct Core {
    framer: Framer,
    outbox: Outbox,
    incoming: Incoming,
    state: State,
    /// Boxed: every connection carries the slot, few get to fill it while others wait.
    close_reason: Option<Box<CloseReason>>,
    read_eof: bool,
    paused_by_protocol: bool,
    /// The most a read reserves, and what the next read reserves: reads start at
    /// [`MIN_READ`], double while they fill the buffer and halve when they come back mostly
    /// empty. (u32: a read of 4 GiB is never wanted, and the chat stays small.)
    read_size: u32,
    next_read: u32,
    /// [`Config::turn_budget`] (u32 for the same reason as `read_size`).
    turn_budget: u32,
    idle_timeout: Option<Duration>,
    idle_deadline: Option<Instant>,
    /// Boxed: only the connections of protocols that set a frame timeout fill the slot.
    frame_clock: Option<Box<FrameClock>>,
    timers: Timers,
    last_now: Option<Instant>,
}

impl Core {
    fn close_because(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.outbox.discard();
        self.timers.clear();
        self.idle_deadline = None;
        self.clear_frame_deadline();
        self.close_reason = Some(Box::new(reason));
    }

    fn close_when_done(&mut self) {
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

    fn finish_if_flushed(&mut self) {
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
    fn push(&mut self, data: Bytes) {
        if self.accepts_output() {
            if let Err(e) = self.outbox.push(data) {
                self.close_because(CloseReason::Error(e));
            }
        }
    }

    #[inline]
    fn push_slices(&mut self, parts: &[&[u8]]) {
        if self.accepts_output() {
            if let Err(e) = self.outbox.push_slices(parts) {
                self.close_because(CloseReason::Error(e));
            }
        }
    }

    /// As Python: output pushed once closing began is dropped, not an error that aborts the
    /// flush of what was queued before.
    #[inline]
    fn accepts_output(&self) -> bool {
        matches!(self.state, State::Connecting | State::Open) && !self.outbox.is_closing()
    }

    fn touch(&mut self, now: Instant) {
        self.last_now = Some(now);
        if let Some(d) = self.idle_timeout {
            self.idle_deadline = now.checked_add(d);
        }
    }

    /// No frame is being timed: after a frame reached its terminator (the next one is timed
    /// from its own first byte), when the deadline fired, or on close.
    #[inline]
    /// Whether the default collector holds more than its bound: the line limit for a delimited
    /// or until-EOF frame (the peer's fault), the counted-frame bound for a count (the
    /// protocol's, checked against the whole count as soon as its first byte is held).
    fn over_collector_bound(&self) -> Option<Error> {
        let held = self.incoming.len();
        if held == 0 {
            return None;
        }
        let counting = match self.framer.terminator() {
            Terminator::Count(0) => self.framer.owes_terminator(),
            Terminator::Count(_) => true,
            // A count that ran down collects what follows as data, as Python does: the peer's
            // bytes, bound by the line limit.
            _ => false,
        };
        if let (true, Terminator::Count(remaining)) = (counting, self.framer.terminator()) {
            let limit = self.framer.max_counted_frame();
            let count = (held as u64).saturating_add(remaining);
            return (count > limit).then_some(Misuse::CountOverLimit { count, limit }.into());
        }
        let limit = self.framer.max_frame();
        (held > limit).then(|| PeerError::FrameTooLong { limit }.into())
    }

    fn clear_frame_deadline(&mut self) {
        if let Some(clock) = &mut self.frame_clock {
            clock.deadline = None;
        }
    }

    fn frame_deadline(&self) -> Option<Instant> {
        self.frame_clock.as_ref().and_then(|c| c.deadline)
    }

    /// Whether input may be handed to the protocol now.
    fn may_deliver(&self) -> bool {
        self.state == State::Open && !self.paused_by_protocol && self.outbox.is_writable()
    }
}

/// The frame timeout of a connection, and the deadline of the frame in progress.
#[derive(Debug)]
struct FrameClock {
    timeout: Duration,
    /// When the frame in progress must be finished (set from its first byte).
    deadline: Option<Instant>,
}

impl FrameClock {
    fn new(timeout: Option<Duration>) -> Option<Box<Self>> {
        timeout.map(|timeout| {
            Box::new(Self {
                timeout,
                deadline: None,
            })
        })
    }
}

/// What a [`Protocol`] callback can do to its connection.
#[derive(Debug)]
pub struct Context<'a> {
    core: &'a mut Core,
    now: Instant,
    /// While a frame is lent from the receive buffer (taken out of the framer meanwhile), the
    /// bytes after it: what [`take_unprocessed`](Self::take_unprocessed) must return. `None`
    /// once taken.
    lent_rest: Option<&'a [u8]>,
}

impl Context<'_> {
    /// Queues bytes for the peer: `&'static str`, `Vec<u8>`, `String` and `Bytes` are taken
    /// without copying. Ignored once the connection is closing (as Python's `push` after
    /// `close_when_done`). Closes the connection with [`Error::OutboxFull`] past the hard limit.
    #[inline]
    pub fn push(&mut self, data: impl Into<Bytes>) {
        self.core.push(data.into());
    }

    /// Queues a copy of borrowed bytes, appended to the connection's output buffer (see
    /// [`Outbox::push_slice`](crate::Outbox::push_slice)): for small pieces, cheaper than an
    /// allocation and an `IoSlice` each.
    #[inline]
    pub fn push_slice(&mut self, data: &[u8]) {
        self.core.push_slices(std::slice::from_ref(&data));
    }

    /// Queues a copy of several borrowed pieces back to back, as one
    /// [`push_slice`](Self::push_slice) of their concatenation (see
    /// [`Outbox::push_slices`](crate::Outbox::push_slices)): a frame and its terminator, a
    /// length line and a value.
    #[inline]
    pub fn push_slices(&mut self, parts: &[&[u8]]) {
        self.core.push_slices(parts);
    }

    /// Queues a producer, pulled once everything ahead of it is written. A producer costs
    /// [`ITEM_OVERHEAD`](crate::outbox::ITEM_OVERHEAD) against the hard limit until it runs out:
    /// past the limit the connection closes with [`Error::OutboxFull`], as a push would.
    pub fn push_producer(&mut self, producer: impl Producer + Send + 'static) {
        // A producer counts against the hard limit as pushes do: past it, the connection closes
        // with `Error::OutboxFull` rather than lose the producer's output without a word.
        if self.core.accepts_output() {
            if let Err(e) = self.core.outbox.push_producer(producer) {
                self.core.close_because(CloseReason::Error(e));
            }
        }
    }

    /// Sets what ends the next frame; applies to every byte not yet delivered.
    ///
    /// Only a delimiter can be refused: an empty one fails with [`Misuse::EmptyDelimiter`],
    /// leaving the terminator unchanged. [`set_count`](Self::set_count) and
    /// [`set_eof`](Self::set_eof) cannot fail and say so; [`set_delimiter`](Self::set_delimiter)
    /// is the fallible one.
    pub fn set_terminator(&mut self, terminator: impl Into<Terminator>) -> Result<(), Misuse> {
        self.core.framer.switch_to(terminator.into())
    }

    /// The next frame is the next `n` bytes; `0` ends the current frame at once (an empty
    /// frame if none of it arrived): a zero-length body needs no special case.
    ///
    /// With the default collector, a count over [`Config::max_counted_frame`] closes the
    /// connection with [`Misuse::CountOverLimit`] (the protocol's responsibility, not the
    /// peer's) before any of its bytes is held; check
    /// [`max_counted_frame`](Self::max_counted_frame) first to answer the peer instead.
    pub fn set_count(&mut self, n: u64) {
        let set = self.core.framer.switch_to(Terminator::Count(n));
        debug_assert!(set.is_ok(), "a count is always a valid terminator");
    }

    /// The next frame is everything until the peer closes its side.
    pub fn set_eof(&mut self) {
        let set = self.core.framer.switch_to(Terminator::Eof);
        debug_assert!(set.is_ok(), "Eof is always a valid terminator");
    }

    /// The next frame ends with `delimiter`; fails with [`Misuse::EmptyDelimiter`] for an
    /// empty one, leaving the terminator unchanged.
    pub fn set_delimiter(&mut self, delimiter: impl Into<Bytes>) -> Result<(), Misuse> {
        self.core
            .framer
            .switch_to(Terminator::Delimiter(delimiter.into()))
    }

    /// The largest count the default collector holds ([`Config::max_counted_frame`]).
    #[must_use]
    pub fn max_counted_frame(&self) -> u64 {
        self.core.framer.max_counted_frame()
    }

    /// The terminator in force (for a count, what remains of it).
    #[must_use]
    pub fn terminator(&self) -> Terminator {
        self.core.framer.terminator()
    }

    /// Changes the longest frame accepted.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.core.framer.set_max_frame(max_frame);
    }

    /// Writes everything queued, then closes: Python's `close_when_done`. No more input
    /// callbacks run.
    pub fn close_when_done(&mut self) {
        self.core.close_when_done();
    }

    /// Closes now, dropping queued output ([`CloseReason::Aborted`]). No further callback runs but
    /// [`Protocol::closed`].
    pub fn close(&mut self) {
        self.core.close_because(CloseReason::Aborted);
    }

    /// Closes now, dropping queued output, with the reason given.
    pub fn close_because(&mut self, reason: CloseReason) {
        self.core.close_because(reason);
    }

    /// The time of the event being handled.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Arms (or re-arms) deadline `id` at `at`; [`Protocol::timeout`] gets [`Timer::Custom`]`(id)`.
    pub fn set_timer(&mut self, id: u32, at: Instant) {
        self.core.timers.set(id, at);
    }

    /// Disarms deadline `id`, if armed.
    pub fn cancel_timer(&mut self, id: u32) {
        self.core.timers.cancel(id);
    }

    /// Sets the idle timeout, counted from now and from every read; `None` removes it.
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.core.idle_timeout = timeout;
        self.core.idle_deadline = timeout.and_then(|d| self.now.checked_add(d));
    }

    /// Sets the frame timeout ([`Config::frame_timeout`]) from the next frame on (a frame in
    /// progress is timed anew from now); `None` removes it. A protocol switches it per phase:
    /// a short one for a request head, a longer one (or none) for a body.
    pub fn set_frame_timeout(&mut self, timeout: Option<Duration>) {
        self.core.frame_clock = FrameClock::new(timeout);
    }

    /// False while queued output is above the high water mark: a protocol producing a lot of
    /// output should wait (input is not delivered meanwhile either).
    #[must_use]
    pub fn is_writable(&self) -> bool {
        self.core.outbox.is_writable()
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

    /// Adds data to the default collector (what the default
    /// [`Protocol::collect_incoming_data`] does).
    pub fn collect(&mut self, data: Bytes) {
        self.core.incoming.push(data);
    }

    /// Takes what the default collector holds (for example an unterminated last frame in
    /// [`Protocol::peer_closed`]).
    pub fn take_incoming(&mut self) -> Bytes {
        self.core.incoming.take()
    }

    /// Takes every byte received but not yet delivered, for a protocol upgrade (STARTTLS,
    /// WebSocket...). Combine with [`pause_reading`](Self::pause_reading) so no more are read
    /// until the new stack is in place.
    pub fn take_unprocessed(&mut self) -> Bytes {
        match self.lent_rest.take() {
            // Inside `found_frame` the frame is lent from the buffer, so the rest cannot be
            // split off it: copied instead (an upgrade happens once per connection).
            Some(rest) => Bytes::copy_from_slice(rest),
            None => self.core.framer.take_buffered(),
        }
    }

    /// Stops delivering input and reading from the peer until
    /// [`resume_reading`](Self::resume_reading).
    pub fn pause_reading(&mut self) {
        self.core.paused_by_protocol = true;
    }

    /// Resumes after [`pause_reading`](Self::pause_reading); buffered input is delivered at the
    /// next event the driver reports.
    pub fn resume_reading(&mut self) {
        self.core.paused_by_protocol = false;
    }

    /// The connection's state.
    #[must_use]
    pub fn state(&self) -> State {
        self.core.state
    }
}

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
/// use asynchat_core::{Bytes, Chat, Context, Protocol, Terminator};
///
/// struct Upper;
/// impl Protocol for Upper {
///     fn first_terminator(&self) -> Terminator { "\n".into() }
///     fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Bytes) {
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
    closed_notified: bool,
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
    /// Fails with [`Misuse::EmptyDelimiter`] if the protocol's first terminator is empty.
    pub fn new(protocol: P) -> Result<Self, Misuse> {
        Self::with_config(protocol, &Config::default())
    }

    /// A connection in state [`State::Connecting`] with the given limits.
    pub fn with_config(protocol: P, config: &Config) -> Result<Self, Misuse> {
        let framer = Framer::unbounded(protocol.first_terminator())?
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
                close_reason: None,
                read_eof: false,
                paused_by_protocol: false,
                read_size: u32::try_from(config.read_size.max(1)).unwrap_or(u32::MAX),
                next_read: u32::try_from(config.read_size.clamp(1, MIN_READ)).unwrap_or(u32::MAX),
                turn_budget: u32::try_from(config.turn_budget.max(1)).unwrap_or(u32::MAX),
                idle_timeout: config.idle_timeout,
                idle_deadline: None,
                frame_clock: FrameClock::new(config.frame_timeout),
                timers: Timers::default(),
                last_now: None,
            },
            closed_notified: false,
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
        let before = self.core.framer.buffered_len();
        let reserve = self.core.next_read as usize;
        let result = self.core.framer.read_with_kept(reserve, read).ok()?;
        let got = self.core.framer.buffered_len().saturating_sub(before);
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
        if self.core.framer.buffered_len() != before {
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
            drop(self.core.framer.take_buffered());
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
    pub fn handle_error(&mut self, error: io::Error) {
        self.core.close_because(CloseReason::Io(Arc::new(error)));
        self.notify_closed();
    }

    /// Time passed: fires every deadline at or before `now` ([`Protocol::timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.last_now = Some(now);
        if let Some(at) = self.core.idle_deadline {
            if at <= now && self.is_live() {
                crate::trace::event!(debug, "idle timeout");
                self.core.idle_deadline = self.core.idle_timeout.and_then(|d| now.checked_add(d));
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
                writable: pending_output,
            },
            State::Closing => Interest {
                readable: !core.read_eof,
                writable: pending_output,
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
    /// use asynchat_core::{Bytes, Chat, Context, Protocol, Terminator};
    /// use std::io::Write;
    /// # struct Hello;
    /// # impl Protocol for Hello {
    /// #     fn first_terminator(&self) -> Terminator { "\n".into() }
    /// #     fn connected(&mut self, ctx: &mut Context<'_>) { ctx.push("hello\n"); }
    /// #     fn found_terminator(&mut self, _: &mut Context<'_>, _: Bytes) {}
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
        self.core.close_reason.as_deref()
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
        Parts {
            unprocessed: self.core.framer.take_buffered(),
            protocol: self.protocol,
            outbox: self.core.outbox,
        }
    }

    fn is_live(&self) -> bool {
        matches!(self.core.state, State::Open | State::Closing)
    }

    fn callback<R>(&mut self, now: Instant, f: impl FnOnce(&mut P, &mut Context<'_>) -> R) -> R {
        #[cfg(feature = "tracing")]
        let was_writable = self.core.outbox.is_writable();
        let mut ctx = Context {
            core: &mut self.core,
            now,
            lent_rest: None,
        };
        let result = f(&mut self.protocol, &mut ctx);
        #[cfg(feature = "tracing")]
        if was_writable && !self.core.outbox.is_writable() {
            tracing::debug!(queued = self.core.outbox.cost(), "backpressure on");
        }
        result
    }

    /// Delivers what can be delivered, times the frame left unfinished, and reports a close.
    fn dispatch(&mut self, now: Instant) {
        self.deliver(now);
        self.time_frame(now);
        self.notify_closed();
    }

    /// Keeps the frame deadline: armed from the first byte of a frame left unfinished after
    /// delivery (a finished frame clears it: [`Core::clear_frame_deadline`]), cleared once nothing is
    /// unfinished or while input is held back (backpressure is not the peer's delay).
    fn time_frame(&mut self, now: Instant) {
        let core = &mut self.core;
        if core.frame_clock.is_none() {
            return;
        }
        let unfinished = core.framer.buffered_len() > 0
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

    /// Delivers buffered input to the protocol until it runs out, the connection stops taking
    /// input, or backpressure holds it.
    fn deliver(&mut self, now: Instant) {
        // Lent frames usually take everything read: then polling for events finds nothing.
        let drained = self.protocol.borrowed_frames() && {
            self.dispatch_borrowed(now);
            self.core.framer.is_drained()
        };
        while !drained && self.core.may_deliver() {
            match self.core.framer.poll_event() {
                Ok(Some(Event::Data(data))) => {
                    self.callback(now, |p, ctx| p.collect_incoming_data(ctx, data));
                    if let Some(error) = self.core.over_collector_bound() {
                        crate::trace::event!(info, %error, "frame over its bound");
                        self.core.close_because(CloseReason::Error(error));
                    } else if self.core.may_deliver() && self.core.framer.take_owed_terminator() {
                        // The frame's end is already known: no need to poll for it.
                        self.deliver_terminator(now);
                    }
                }
                Ok(Some(Event::Terminator)) => self.deliver_terminator(now),
                Ok(Some(Event::End { unterminated })) => {
                    self.callback(now, |p, ctx| p.peer_closed(ctx, unterminated));
                }
                Ok(None) => break,
                Err(PeerError::FrameTooLong { limit })
                    if self.core.framer.over_long_policy() == OverLongPolicy::Skip =>
                {
                    crate::trace::event!(info, limit, "frame too long: skipped");
                    drop(self.core.incoming.take());
                    self.callback(now, |p, ctx| p.frame_too_long(ctx, limit));
                }
                Err(e) => {
                    crate::trace::event!(info, error = %e, "bad input");
                    self.core.close_because(CloseReason::Error(e.into()));
                }
            }
            self.core.finish_if_flushed();
        }
    }

    /// Lends every frame that is whole in the buffer to [`Protocol::found_frame`], straight from
    /// the receive buffer; stops at the first frame this fast path cannot give, for `dispatch`
    /// to deliver the general way. The buffer is taken out of the framer meanwhile: the protocol
    /// holds the framer through its context (it may change the terminator) while the frame
    /// borrows the buffer.
    fn dispatch_borrowed(&mut self, now: Instant) {
        if !self.core.framer.lends_frames() {
            return;
        }
        let buf = self.core.framer.lend_buffer();
        let mut delivered = 0;
        while self.core.may_deliver() {
            let Some((frame, next)) = self.core.framer.whole_frame_in(&buf, delivered) else {
                break;
            };
            let mut ctx = Context {
                core: &mut self.core,
                now,
                lent_rest: Some(&buf[next..]),
            };
            ctx.core.clear_frame_deadline();
            self.protocol.found_frame(&mut ctx, &buf[frame]);
            let rest_taken = ctx.lent_rest.is_none();
            delivered = if rest_taken { buf.len() } else { next };
        }
        self.core.framer.restore_buffer(buf, delivered);
    }

    fn deliver_terminator(&mut self, now: Instant) {
        self.core.clear_frame_deadline();
        let frame = self.core.incoming.take();
        self.callback(now, |p, ctx| p.found_terminator(ctx, frame));
    }

    fn notify_closed(&mut self) {
        if self.core.state == State::Closed && !self.closed_notified {
            self.closed_notified = true;
            if let Some(reason) = self.core.close_reason.as_deref() {
                self.protocol.closed(reason);
            }
        }
    }
}

#[cfg(test)]
mod tests;
