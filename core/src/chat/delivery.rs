//! Handing input to the protocol: frames received whole lent straight from the receive buffer,
//! the event loop over the framer for the rest, and the callbacks' context.

use std::time::Instant;

use super::{Chat, CloseReason, Context, Frame, Protocol};
use crate::error::{Misuse, PeerError};
use crate::framer::{Event, OverLongPolicy};

/// Frames ended in a row by `Count(0)` with no input consumed, after which the protocol is
/// taken to loop ([`Misuse::EndlessEmptyFrames`]): far more than any protocol ends on purpose
/// (each empty frame is its own callback that chose `Count(0)` again).
const MAX_EMPTY_FRAMES: u32 = 1024;

impl<P: Protocol> Chat<P> {
    pub(super) fn callback<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut P, &mut Context<'_>) -> R,
    ) -> R {
        #[cfg(feature = "tracing")]
        let was_writable = self.core.outbox.is_writable();
        let mut ctx = Context {
            core: &mut self.core,
            now,
            lent_rest: None,
            lent_frame: None,
        };
        let result = f(&mut self.protocol, &mut ctx);
        #[cfg(feature = "tracing")]
        self.core.trace_backpressure_on(was_writable);
        result
    }

    /// Delivers what can be delivered, times the frame left unfinished, and reports a close.
    pub(super) fn dispatch(&mut self, now: Instant) {
        self.deliver(now);
        self.time_frame(now);
        self.notify_closed();
    }

    /// Delivers buffered input to the protocol until it runs out, the connection stops taking
    /// input, or backpressure holds it.
    pub(super) fn deliver(&mut self, now: Instant) {
        // Frames ended where no input was consumed since the last one: only a `Count(0)` set
        // again and again does that, and past a bound it is a loop, not a protocol.
        let (mut empty_run, mut empty_at) = (0u32, usize::MAX);
        while self.core.may_deliver() {
            if self.core.framer.lends_frames() {
                self.deliver_lent(now);
                // Lent frames usually take everything read: then polling finds nothing.
                if self.core.framer.is_drained() || !self.core.may_deliver() {
                    break;
                }
            }
            match self.core.framer.poll_event() {
                Ok(Some(Event::Data(data))) => {
                    self.callback(now, |p, ctx| p.collect_incoming_data(ctx, data.into()));
                    if !self.core.close_if_over_collector_bound()
                        && self.core.may_deliver()
                        && self.core.framer.take_owed_terminator()
                    {
                        // The frame's end is already known: no need to poll for it.
                        self.deliver_terminator(now);
                    }
                }
                Ok(Some(Event::Terminator)) => {
                    let at = self.core.framer.unprocessed_len();
                    if at == empty_at {
                        empty_run += 1;
                    } else {
                        (empty_run, empty_at) = (0, at);
                    }
                    if empty_run >= MAX_EMPTY_FRAMES {
                        let error = Misuse::EndlessEmptyFrames { frames: empty_run };
                        crate::trace::event!(warn, %error, "protocol loops");
                        self.core.close_because(CloseReason::Error(error.into()));
                    } else {
                        self.deliver_terminator(now);
                    }
                }
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

    /// Delivers every frame that is whole in the buffer and shorter than the outbox's copy
    /// threshold lent straight from the receive buffer: to `collect_incoming_data`, then to
    /// `found_terminator` (the same slice, if the default collector took it). Stops at the
    /// first frame this cannot give, for the event loop to deliver the general way. Longer
    /// frames are shared instead, as pushing them back is then zero-copy (over the outbox's
    /// threshold).
    ///
    /// The buffer is taken out of the framer meanwhile: the protocol holds the framer through
    /// its context (it may change the terminator) while the frame borrows the buffer.
    fn deliver_lent(&mut self, now: Instant) {
        // Below this a shared frame would be copied out of the buffer anyway.
        let limit = (self.core.outbox.coalesce_below()).max(crate::framer::ALWAYS_COPIED_BELOW);
        #[cfg(feature = "tracing")]
        let was_writable = self.core.outbox.is_writable();
        let buf = self.core.framer.lend_buffer();
        let mut delivered = 0;
        while self.core.may_deliver() {
            let Some((frame, next)) = self.core.framer.whole_frame_in(&buf, delivered, limit)
            else {
                break;
            };
            delivered = next;
            let frame = &buf[frame];
            let mut ctx = Context {
                core: &mut self.core,
                now,
                lent_rest: Some(&buf[next..]),
                lent_frame: Some(frame),
            };
            if !frame.is_empty() {
                // As an `Event::Data` whose delimiter was found: the terminator is owed.
                ctx.core.framer.owe_terminator(frame.len());
                self.protocol
                    .collect_incoming_data(&mut ctx, Frame::lent(frame));
                // The callback may have collected more, or lowered the bound.
                ctx.core.close_if_over_collector_bound();
                if !ctx.core.may_deliver() || !ctx.core.framer.take_owed_terminator() {
                    // The terminator stays owed, delivered once input flows again: the frame
                    // cannot stay lent until then.
                    ctx.core.incoming.own(Some(frame));
                    if ctx.lent_rest.is_none() {
                        delivered = buf.len();
                    }
                    break;
                }
            }
            ctx.core.clear_frame_deadline();
            let collected = ctx.core.incoming.take_frame(Some(frame));
            self.protocol.found_terminator(&mut ctx, collected);
            // The frame collected again (a continuation line kept for the next one): it is
            // copied now, as the note would not hold past this frame.
            ctx.core.incoming.own(Some(frame));
            if ctx.lent_rest.is_none() {
                delivered = buf.len();
            }
        }
        self.core.framer.restore_buffer(buf, delivered);
        #[cfg(feature = "tracing")]
        self.core.trace_backpressure_on(was_writable);
    }

    pub(super) fn deliver_terminator(&mut self, now: Instant) {
        self.core.clear_frame_deadline();
        let frame = self.core.incoming.take_frame(None);
        self.callback(now, |p, ctx| p.found_terminator(ctx, frame));
    }
}
