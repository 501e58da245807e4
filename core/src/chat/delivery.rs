//! Handing input to the protocol: the event loop over the framer, the lent-frame fast path,
//! and the callbacks' context.

use std::time::Instant;

use super::{Chat, CloseReason, Context, Protocol};
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
        };
        let result = f(&mut self.protocol, &mut ctx);
        #[cfg(feature = "tracing")]
        if was_writable && !self.core.outbox.is_writable() {
            tracing::debug!(queued = self.core.outbox.cost(), "backpressure on");
        }
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
        // Lent frames usually take everything read: then polling for events finds nothing.
        let drained = self.protocol.borrowed_frames() && {
            self.dispatch_borrowed(now);
            self.core.framer.is_drained()
        };
        // Frames ended where no input was consumed since the last one: only a `Count(0)` set
        // again and again does that, and past a bound it is a loop, not a protocol.
        let (mut empty_run, mut empty_at) = (0u32, usize::MAX);
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

    /// Lends every frame that is whole in the buffer to [`Protocol::found_frame`], straight from
    /// the receive buffer; stops at the first frame this fast path cannot give, for `dispatch`
    /// to deliver the general way. The buffer is taken out of the framer meanwhile: the protocol
    /// holds the framer through its context (it may change the terminator) while the frame
    /// borrows the buffer.
    pub(super) fn dispatch_borrowed(&mut self, now: Instant) {
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

    pub(super) fn deliver_terminator(&mut self, now: Instant) {
        self.core.clear_frame_deadline();
        let frame = self.core.incoming.take();
        self.callback(now, |p, ctx| p.found_terminator(ctx, frame));
    }
}
