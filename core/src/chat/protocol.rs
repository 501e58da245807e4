//! What a protocol is: the `async_chat` callbacks, and the deadlines it may be told about.

#[allow(unused_imports)] // for intra-doc links
use super::Config;
use super::{CloseReason, Context, Frame};
use crate::terminator::Terminator;
#[allow(unused_imports)] // for intra-doc links
use crate::{error::PeerError, framer::OverLongPolicy};

/// A line- or terminator-based protocol: the `async_chat` callbacks.
///
/// Only [`first_terminator`](Self::first_terminator) and
/// [`found_terminator`](Self::found_terminator) are required: by default incoming data is
/// collected for you and handed to `found_terminator` as one frame.
///
/// ```
/// use asynchat_core::{Context, Frame, Protocol, Terminator};
///
/// /// Answers every line with its length.
/// struct LineLength;
///
/// impl Protocol for LineLength {
///     fn first_terminator(&self) -> Terminator {
///         Terminator::from("\n")
///     }
///     fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
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

    /// Frame content arrived (never terminator bytes, never empty). The default collects it,
    /// bounded by `max_frame`, and hands it to [`found_terminator`](Self::found_terminator);
    /// override it to stream large frames instead of buffering them (call [`Context::collect`]
    /// to keep the default behaviour for some frames).
    ///
    /// A frame received whole comes as one piece lent from the receive buffer (see [`Frame`]):
    /// the default collector only notes it, and `found_terminator` is lent the same bytes.
    #[inline]
    fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
        ctx.collect(data);
    }

    /// The current frame ended. `frame` holds what the default collector gathered (empty if
    /// [`collect_incoming_data`](Self::collect_incoming_data) was overridden): lent from the
    /// receive buffer when it arrived whole, so reading it costs nothing and
    /// [`Frame::into_bytes`] makes it an owned `Bytes` if it is kept. Call
    /// [`Context::set_terminator`] here to frame the following bytes differently.
    ///
    /// This is called once per frame: for a short body, `#[inline]` on it lets the compiler
    /// build it into the delivery loop.
    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>);

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

    /// TLS is in place after [`Context::start_tls`]: everything from here on is inside it.
    /// Forget what the peer said in plaintext (RFC 3207 §4.2: an SMTP server discards its
    /// knowledge of the client, EHLO included). The default does nothing.
    fn tls_started(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
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
