//! Why a connection closed, and what the driver should wait for.

use std::fmt;
use std::io;
use std::sync::Arc;

#[allow(unused_imports)] // for intra-doc links
use super::Timer;
use crate::error::Error;

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
