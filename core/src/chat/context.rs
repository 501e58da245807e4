//! What a protocol's callbacks can do to their connection.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::state::{Core, FrameClock, IdleTimeout};
use super::{CloseReason, Frame, State};
#[allow(unused_imports)] // for intra-doc links
use super::{Config, Protocol, Timer};
use crate::error::Misuse;
use crate::producer::Producer;
use crate::terminator::Terminator;
#[allow(unused_imports)] // for intra-doc links
use crate::{error::Error, outbox::Outbox};

/// What a [`Protocol`] callback can do to its connection.
#[derive(Debug)]
pub struct Context<'a> {
    pub(super) core: &'a mut Core,
    pub(super) now: Instant,
    /// While a frame is lent from the receive buffer (taken out of the framer meanwhile), the
    /// bytes after it: what [`take_unprocessed`](Self::take_unprocessed) must return. `None`
    /// once taken.
    pub(super) lent_rest: Option<&'a [u8]>,
    /// The frame being lent meanwhile, which the default collector notes rather than copies.
    pub(super) lent_frame: Option<&'a [u8]>,
}

impl Context<'_> {
    /// Queues bytes for the peer: a shared [`Frame`] (`Bytes`, `Vec<u8>`, `String`,
    /// `&'static str`...) is taken without copying, and the outbox copies short ones together
    /// ([`Config::coalesce_below`]); a lent one (a frame received whole, a borrowed `&[u8]`) is
    /// copied into the output buffer. Ignored once the connection is closing (as Python's `push`
    /// after `close_when_done`). Closes the connection with [`Error::OutboxFull`] past the hard
    /// limit.
    #[inline]
    pub fn push<'f>(&mut self, data: impl Into<Frame<'f>>) {
        match data.into().into_parts() {
            Ok(slice) => self.core.push_slices(std::slice::from_ref(&slice)),
            Err(bytes) => self.core.push(bytes),
        }
    }

    /// Queues a copy of borrowed bytes, appended to the connection's output buffer (see
    /// [`Outbox::push_slice`](crate::Outbox::push_slice)): what [`push`](Self::push) does with
    /// a lent frame.
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
    /// peer's) as soon as the collector holds its first byte, before the rest arrives; check
    /// [`max_counted_frame`](Self::max_counted_frame) first to answer the peer instead.
    ///
    /// `Count(0)` set again in every callback, with no input consumed in between, would
    /// deliver empty frames forever: after 1024 of them the connection closes with
    /// [`Misuse::EndlessEmptyFrames`].
    pub fn set_count(&mut self, n: u64) {
        self.core.framer.switch_to_count(n);
    }

    /// The next frame is everything until the peer closes its side.
    pub fn set_eof(&mut self) {
        let set = self.core.framer.switch_to(Terminator::Eof);
        debug_assert!(set.is_ok(), "Eof is always a valid terminator");
    }

    /// The next frame ends with `delimiter`; fails with [`Misuse::EmptyDelimiter`] for an
    /// empty one, leaving the terminator unchanged.
    pub fn set_delimiter(&mut self, delimiter: impl Into<Bytes>) -> Result<(), Misuse> {
        self.core.framer.switch_to_delimiter(delimiter.into())
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
        self.core.idle_timeout = IdleTimeout::new(timeout);
        self.core.idle_deadline = self.core.idle_timeout.deadline(self.now);
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
    #[inline]
    pub fn collect(&mut self, data: Frame<'_>) {
        self.core.incoming.push(data, self.lent_frame);
    }

    /// Takes what the default collector holds (for example an unterminated last frame in
    /// [`Protocol::peer_closed`]).
    pub fn take_incoming(&mut self) -> Bytes {
        self.core.incoming.own(self.lent_frame);
        self.core.incoming.take()
    }

    /// Takes every byte received but not yet delivered, for a protocol upgrade (STARTTLS,
    /// WebSocket...). Combine with [`pause_reading`](Self::pause_reading) so no more are read
    /// until the new stack is in place.
    pub fn take_unprocessed(&mut self) -> Bytes {
        match self.lent_rest.take() {
            // While a frame is lent from the buffer, the rest cannot be
            // split off it: copied instead (an upgrade happens once per connection).
            Some(rest) => Bytes::copy_from_slice(rest),
            None => self.core.framer.take_unprocessed(),
        }
    }

    /// Switches the connection to TLS in band (STARTTLS: SMTP's RFC 3207, IMAP, POP3, FTP's
    /// `AUTH TLS`), once the output queued so far (the "go ahead" reply) is written.
    ///
    /// Every byte received and not yet delivered is discarded now, never delivered: bytes a
    /// peer pipelined in plaintext after the command must not count as part of the encrypted
    /// session (the command injection of CVE-2011-0411). No input is read or delivered until
    /// the driver has put TLS in place; then the protocol hears
    /// [`Protocol::tls_started`], where it resets what it learnt in plaintext (RFC 3207 §4.2).
    /// The output queued as bytes before the call is written in plaintext, and no write goes
    /// past it; output pushed afterwards (and producers not yet pulled) goes out inside TLS.
    ///
    /// At most 65 534 bytes, and no producer, may be queued when it is called (the reply is a
    /// line); more closes the connection with [`Misuse::StartTlsBehindOutput`]. Asked for once:
    /// later calls do nothing, as do calls once closing or after the peer's end of stream. A driver that cannot put TLS in place (no TLS
    /// configuration for this connection) closes it with an I/O error of kind `Unsupported`.
    pub fn start_tls(&mut self) {
        if self.core.tls != super::state::TlsPhase::Plain
            || self.core.state != State::Open
            || self.core.read_eof
        {
            // Already asked for, closing, or the peer has ended its side: TLS could not start.
            return;
        }
        let dropped = self.take_unprocessed().len() + self.core.incoming.len();
        self.core.incoming = super::collector::Incoming::Empty;
        crate::trace::event!(
            debug,
            dropped,
            "STARTTLS: plaintext after the command discarded"
        );
        let _ = dropped;
        if !self.core.outbox.set_barrier() {
            // A go-ahead reply is a line; more than this before the switch is a protocol that
            // lost track of its output.
            let queued = self.core.outbox.queued_bytes();
            self.close_because(CloseReason::Error(
                Misuse::StartTlsBehindOutput { queued }.into(),
            ));
            return;
        }
        self.core.tls = super::state::TlsPhase::Requested;
    }

    /// Whether the connection has switched to TLS in band ([`start_tls`](Self::start_tls)).
    #[must_use]
    pub fn is_tls_started(&self) -> bool {
        self.core.tls == super::state::TlsPhase::Started
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
