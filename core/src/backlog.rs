//! Backpressure across connections: what a connection's handle may still queue for it.
//!
//! A push through a driver's handle (another connection's broadcast, another thread) travels
//! through a queue the receiving connection empties on its next turn, into that connection's
//! [`Outbox`](crate::Outbox). Both cost memory the receiver's peer controls: a peer that never
//! reads would let them grow without end. A [`Backlog`] is shared by the handle and the
//! connection: the connection publishes what its outbox costs, the handle counts what is in
//! flight, and a push is **refused** ([`PushError::Full`]) while the two together cost more
//! than [`IN_FLIGHT_FACTOR`] times the connection's high water mark. The factor leaves room for
//! a burst the connection has not had a turn to write yet (one turn of a broadcaster queues a
//! whole read's worth of lines for every member) without refusing a receiver that keeps up;
//! one that does not read is refused once its backlog reaches four marks (256 KiB by default).
//! The sender is never parked: handles are called from
//! protocol callbacks and other event loops, which must not block. It decides: drop the
//! message, retry later, or close the slow receiver
//! ([`CloseReason::Error`](crate::CloseReason::Error) with [`Error::OutboxFull`](crate::Error::OutboxFull)
//! is the typed reason for that).
//!
//! ```
//! use asynchat_core::backlog::{push_cost, Backlog, PushError};
//!
//! let backlog = Backlog::new(1024);
//! assert!(backlog.try_reserve(push_cost(600)).is_ok());
//! assert!(backlog.try_reserve(push_cost(600)).is_ok(), "under the limit before it: taken");
//! assert!(matches!(backlog.try_reserve(push_cost(1)), Err(PushError::Full { .. })));
//! backlog.release(push_cost(600)); // the connection took one push into its outbox...
//! backlog.publish(600); // ...and says what its outbox costs now
//! assert!(backlog.try_reserve(push_cost(1)).is_err(), "still above the limit");
//! backlog.publish(0); // it wrote everything
//! assert!(backlog.try_reserve(push_cost(1)).is_ok());
//! ```

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A connection's output and the pushes in flight to it may cost up to this many times its
/// high water mark ([`Backlog::for_high_water`]).
pub const IN_FLIGHT_FACTOR: usize = 4;

/// What one push waiting in a handle's queue costs beyond its bytes: the queue's slot (a
/// command holding a `Bytes`), and the heap header of the shared buffer, estimated as
/// [`ITEM_OVERHEAD`](crate::outbox::ITEM_OVERHEAD) is.
pub const PUSH_OVERHEAD: usize = 64;

/// What a push of `len` bytes costs while it waits in a handle's queue.
#[must_use]
pub const fn push_cost(len: usize) -> usize {
    len.saturating_add(PUSH_OVERHEAD)
}

/// Why a push through a handle was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError {
    /// The connection has closed (or never existed): nothing will be sent.
    Closed,
    /// The connection's output and the pushes in flight to it are above its backlog limit
    /// ([`IN_FLIGHT_FACTOR`] times its high water mark): its peer is not reading as fast as
    /// it is written to. Nothing was queued.
    Full {
        /// What its queued output and the pushes in flight to it cost, in bytes.
        queued: usize,
        /// Its backlog limit.
        limit: usize,
    },
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the connection has closed"),
            Self::Full { queued, limit } => write!(
                f,
                "the connection's backlog ({queued} bytes) is above its limit ({limit})"
            ),
        }
    }
}

impl std::error::Error for PushError {}

/// The shared count behind one connection's handle; see the [module docs](self).
#[derive(Debug)]
pub struct Backlog {
    /// What pushes sent through handles and not yet taken by the connection cost.
    in_flight: AtomicUsize,
    /// What the connection's outbox cost when it last said.
    queued: AtomicUsize,
    limit: usize,
}

impl Backlog {
    /// The backlog of a connection whose high water mark is `high_water`: pushes are refused
    /// above [`IN_FLIGHT_FACTOR`] times that.
    #[must_use]
    pub fn for_high_water(high_water: usize) -> Self {
        Self::new(high_water.saturating_mul(IN_FLIGHT_FACTOR))
    }

    /// A backlog that refuses pushes while the connection's output and the pushes in flight to
    /// it cost more than `limit`.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            limit,
        }
    }

    /// Counts a push costing `cost` (see [`push_cost`]), unless the connection is already above
    /// its limit. A push is taken whenever the total *before* it is within the limit, so one
    /// larger than the limit still reaches an idle connection; the total stays below the limit
    /// plus one push per concurrent sender.
    pub fn try_reserve(&self, cost: usize) -> Result<(), PushError> {
        let queued = self.queued.load(Ordering::Acquire);
        let before = self.in_flight.fetch_add(cost, Ordering::AcqRel);
        let total = before.saturating_add(queued);
        if total > self.limit {
            self.in_flight.fetch_sub(cost, Ordering::AcqRel);
            return Err(PushError::Full {
                queued: total,
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// The connection took a push costing `cost` off its queue (connection side).
    pub fn release(&self, cost: usize) {
        // Saturating: a release never follows anything but its own reservation, but a count
        // that wrapped would refuse every push for ever.
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(cost))
            });
    }

    /// What the connection's outbox costs now ([`Outbox::cost`](crate::Outbox::cost);
    /// connection side, after every turn that may have changed it).
    pub fn publish(&self, queued: usize) {
        self.queued.store(queued, Ordering::Release);
    }

    /// What the connection's output and the pushes in flight to it cost, as last known.
    #[must_use]
    pub fn total(&self) -> usize {
        self.queued
            .load(Ordering::Acquire)
            .saturating_add(self.in_flight.load(Ordering::Acquire))
    }

    /// The backlog pushes are refused above.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pushes_are_refused_above_the_limit_and_taken_again_once_it_drains() {
        let b = Backlog::for_high_water(250);
        assert_eq!(b.limit(), 1000);
        b.try_reserve(push_cost(2000))
            .expect("an idle connection takes a large push");
        assert_eq!(
            b.try_reserve(push_cost(1)),
            Err(PushError::Full {
                queued: push_cost(2000),
                limit: 1000
            })
        );
        assert_eq!(b.total(), push_cost(2000), "a refused push is not counted");
        b.release(push_cost(2000));
        b.publish(2000);
        assert!(
            b.try_reserve(push_cost(1)).is_err(),
            "the outbox is still above"
        );
        b.publish(500);
        b.try_reserve(push_cost(1))
            .expect("drained below the limit");
    }

    #[test]
    fn concurrent_senders_overshoot_by_at_most_one_push_each() {
        let b = Arc::new(Backlog::new(10_000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..10_000)
                        .filter(|_| b.try_reserve(push_cost(100)).is_ok())
                        .count()
                })
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(taken * push_cost(100) <= 10_000 + 4 * push_cost(100));
        assert!(
            taken * push_cost(100) > 10_000 - push_cost(100),
            "taken up to the limit"
        );
        assert_eq!(b.total(), taken * push_cost(100));
    }
}
