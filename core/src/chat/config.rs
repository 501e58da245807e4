//! The limits and sizes of a connection, all finite by default.

use std::time::Duration;

#[allow(unused_imports)] // for intra-doc links
use super::{Chat, Context, Protocol};
use super::{DEFAULT_READ_SIZE, DEFAULT_TURN_BUDGET};
use crate::framer::{OverLongPolicy, DEFAULT_MAX_COUNTED_FRAME, DEFAULT_MAX_FRAME};
use crate::outbox::{
    DEFAULT_COALESCE_BELOW, DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, DEFAULT_OUTBOX_LIMIT,
};
#[allow(unused_imports)] // for intra-doc links
use crate::{
    error::{Error, Misuse},
    framer::Framer,
    outbox::Outbox,
};

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
    /// ([`Outbox::with_coalescing`]); default [`DEFAULT_COALESCE_BELOW`], 0 never copies shared
    /// pushes. Frames received whole and shorter than this (512 B at least) are also lent to the
    /// protocol rather than shared (see [`Frame`](crate::Frame)); a lent frame pushed back is
    /// copied whatever this says.
    pub coalesce_below: usize,
    /// Fairness: the most bytes a driver reads, and the most it writes, for one connection in
    /// one turn (one wake-up of its task, one readiness event of its loop) before the
    /// connection yields to the others and resumes in a later turn. Frames delivered per turn
    /// are bounded by the bytes read. See [`DEFAULT_TURN_BUDGET`].
    pub turn_budget: usize,
    /// How long a TLS handshake may take before the connection is closed with
    /// [`TlsError::HandshakeTimedOut`](crate::TlsError::HandshakeTimedOut) (servers and clients
    /// the drivers run over TLS). See [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
}

/// Default [`Config::handshake_timeout`]: 10 s, ample for a handshake across the world, short
/// enough that a peer that never finishes one holds its connection briefly.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
            coalesce_below: DEFAULT_COALESCE_BELOW,
            turn_budget: DEFAULT_TURN_BUDGET,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
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
    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    #[must_use]
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }
}
