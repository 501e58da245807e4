//! The server handle every driver hands out, and the bookkeeping behind it: what a server
//! counts, how it stops accepting, how it winds down within a deadline, and how `wait` learns
//! that the last connection has gone (woken, never polled on a timer).
//!
//! A driver implements [`ServerControl`] (the task-per-connection drivers share
//! [`Handle`](super::Handle), mio's loop has its own) and hands out [`ServerHandle`]s; protocols
//! written against the handle run unchanged on every driver.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use crate::chat::CloseReason;
use crate::error::Error;

use super::{ConnHandle, ConnId};

/// How long a graceful shutdown gives connections to flush before closing what is left, when
/// the caller names no deadline (a dropped server, a Ctrl-C): 10 s.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Connections that closed, by reason ([`CloseReason`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedStats {
    /// After `close_when_done` flushed everything ([`CloseReason::Done`]).
    pub done: u64,
    /// The peer closed first ([`CloseReason::PeerClosed`]).
    pub peer_closed: u64,
    /// Closed by the protocol or a handle, output dropped ([`CloseReason::Aborted`]).
    pub aborted: u64,
    /// Idle timeout ([`CloseReason::TimedOut`]).
    pub timed_out: u64,
    /// Frame timeout: a peer too slow to finish a frame ([`CloseReason::FrameTimedOut`]).
    pub frame_timed_out: u64,
    /// The peer's bad input ([`PeerError`](crate::PeerError): a frame too long...).
    pub peer_errors: u64,
    /// A local limit ([`Error::OutboxFull`]): a receiver too slow for what it was sent.
    pub limits: u64,
    /// The protocol misused the API ([`Misuse`](crate::Misuse)).
    pub misuse: u64,
    /// The socket failed (reset, broken pipe...).
    pub io: u64,
}

impl ClosedStats {
    /// Every close counted.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.done
            + self.peer_closed
            + self.aborted
            + self.timed_out
            + self.frame_timed_out
            + self.peer_errors
            + self.limits
            + self.misuse
            + self.io
    }
}

/// What a server has done so far: every connection it accepted, refused or lost is in here, so
/// no failure goes unseen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted (including those the factory refused).
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections closed, by reason.
    pub closed: ClosedStats,
    /// `accept` failures (out of descriptors...), each followed by a back-off.
    pub accept_errors: u64,
    /// Accepted connections dropped before they started: the factory's protocol could not
    /// run (an invalid first terminator, [`Misuse`](crate::Misuse)).
    pub refused: u64,
}

/// The counters behind [`ServerStats`], updated by a driver as things happen (driver side).
#[derive(Debug, Default)]
pub struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    accept_errors: AtomicU64,
    refused: AtomicU64,
    closed: [AtomicU64; 9],
}

impl Counters {
    /// A connection was accepted and will run.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection counted as [`accepted`](Self::accepted) cannot run (its protocol was
    /// refused): dropped at once, no longer active.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// `accept` failed.
    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A running connection ended for `reason` (`None`: it ended without one, as when its
    /// task was dropped).
    pub fn closed(&self, reason: Option<&CloseReason>) {
        let slot = match reason {
            Some(CloseReason::Done) => 0,
            Some(CloseReason::PeerClosed) => 1,
            Some(CloseReason::TimedOut) => 3,
            Some(CloseReason::FrameTimedOut) => 4,
            Some(CloseReason::Error(Error::Peer(_))) => 5,
            Some(CloseReason::Error(Error::OutboxFull { .. })) => 6,
            Some(CloseReason::Error(Error::Misuse(_))) => 7,
            Some(CloseReason::Io(_)) => 8,
            Some(CloseReason::Aborted) | None => 2,
        };
        self.closed[slot].fetch_add(1, Ordering::Relaxed);
        // Saturating: a driver that reports a close it never counted as accepted (a client
        // connection) must not wrap the gauge.
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A snapshot.
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        let c = |i: usize| self.closed[i].load(Ordering::Relaxed);
        ServerStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            closed: ClosedStats {
                done: c(0),
                peer_closed: c(1),
                aborted: c(2),
                timed_out: c(3),
                frame_timed_out: c(4),
                peer_errors: c(5),
                limits: c(6),
                misuse: c(7),
                io: c(8),
            },
        }
    }
}

/// A flag that can be awaited on any runtime: set once, wakes every waiter (driver side).
#[derive(Debug, Default)]
pub struct Signal {
    set: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl Signal {
    /// Sets the flag and wakes everything waiting for it.
    pub fn set(&self) {
        self.set.store(true, Ordering::Release);
        let waiters = std::mem::take(&mut *self.lock());
        for waker in waiters {
            waker.wake();
        }
    }

    /// Whether the flag is set.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Ready once the flag is set.
    pub fn poll_set(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.is_set() {
            return Poll::Ready(());
        }
        let mut waiters = self.lock();
        // Checked again under the lock: `set` takes the waiters after setting the flag.
        if self.is_set() {
            return Poll::Ready(());
        }
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_set(cx))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        // A panic elsewhere while holding the lock leaves a list that is still usable.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a driver's server offers to its handles (driver side).
pub trait ServerControl: Send + Sync {
    /// Stops accepting; open connections go on.
    fn stop_accepting(&self);
    /// Graceful shutdown: stops accepting, asks every connection to flush and close, and
    /// closes (dropping their output) those still open after `deadline`.
    fn shutdown(&self, deadline: Duration);
    /// A handle on connection `id`, if it is open.
    fn conn(&self, id: ConnId) -> Option<ConnHandle>;
    /// Calls `f` with a handle on every open connection (a broadcast).
    fn for_each_conn(&self, f: &mut dyn FnMut(ConnHandle));
    /// The counters.
    fn stats(&self) -> ServerStats;
}

/// A `Send + Clone` handle on a server, from anywhere (one of its connections' protocols, a
/// signal handler, a test): stop it, wind it down within a deadline, reach its connections,
/// read its counters. The same type on every driver.
#[derive(Clone)]
pub struct ServerHandle {
    control: Arc<dyn ServerControl>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ServerHandle {
    /// A handle on the server `control` runs (driver side).
    #[must_use]
    pub fn new(control: Arc<dyn ServerControl>) -> Self {
        Self { control }
    }

    /// Stops accepting new connections; the open ones go on.
    pub fn stop_accepting(&self) {
        self.control.stop_accepting();
    }

    /// Graceful shutdown: stop accepting, let every connection flush what is queued and close,
    /// and close (dropping their output) those still open after `deadline`. Returns at once;
    /// the server's `wait` returns when the last connection has gone.
    pub fn shutdown(&self, deadline: Duration) {
        self.control.shutdown(deadline);
    }

    /// A handle on connection `id`, if it is open.
    #[must_use]
    pub fn conn(&self, id: ConnId) -> Option<ConnHandle> {
        self.control.conn(id)
    }

    /// Calls `f` with a handle on every open connection.
    pub fn for_each_conn(&self, mut f: impl FnMut(ConnHandle)) {
        self.control.for_each_conn(&mut f);
    }

    /// Connections open now.
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.stats().active
    }

    /// What the server has counted so far.
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        self.control.stats()
    }
}

/// Winds a server down once `stopped` is set (driver side, in its accept task): asks every
/// connection to flush and close, then closes what is left when `deadline` (a timer of the
/// driver's runtime, started by `start_timer` once the deadline is known, and again whenever a
/// later shutdown brings the deadline forward) fires. Returns when no connection is left.
pub async fn wind_down<T: Future<Output = ()>>(
    handle: &super::Handle,
    start_timer: impl FnMut(Duration) -> T,
) {
    crate::trace::event!(info, connections = handle.connections(), deadline = ?handle.shutdown_deadline(),
        "stopped accepting: closing every connection when done");
    handle.close_all_when_done();
    let mut start_timer = start_timer;
    let mut armed = handle.shutdown_at();
    let mut timer = Box::pin(start_timer(handle.shutdown_deadline()));
    let mut forced = false;
    std::future::poll_fn(|cx| {
        if handle.poll_idle(cx).is_ready() {
            return Poll::Ready(());
        }
        // Polled until `Pending`, so that a later shutdown wakes the task.
        while let (false, Some(at)) = (forced, armed) {
            let Poll::Ready(earlier) = handle.poll_earlier_deadline(cx, at) else {
                break;
            };
            let until = earlier.saturating_duration_since(Instant::now());
            crate::trace::event!(info, deadline = ?until, "shutdown deadline brought forward");
            armed = Some(earlier);
            timer.set(start_timer(until));
        }
        if !forced && timer.as_mut().poll(cx).is_ready() {
            crate::trace::event!(
                warn,
                left = handle.connections(),
                "shutdown deadline passed: closing what is left"
            );
            forced = true;
            handle.force();
            handle.close_all();
            return handle.poll_idle(cx);
        }
        Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Misuse, PeerError};

    #[test]
    fn every_close_is_counted_under_its_reason() {
        let c = Counters::default();
        for _ in 0..4 {
            c.accepted();
        }
        c.refused();
        c.accept_error();
        c.closed(Some(&CloseReason::Done));
        c.closed(Some(&CloseReason::Error(
            PeerError::FrameTooLong { limit: 1 }.into(),
        )));
        c.closed(Some(&CloseReason::Error(Misuse::EmptyDelimiter.into())));
        let s = c.stats();
        assert_eq!(s.accepted, 4);
        assert_eq!(s.active, 0);
        assert_eq!(s.refused, 1);
        assert_eq!(s.accept_errors, 1);
        assert_eq!(s.closed.done, 1);
        assert_eq!(s.closed.peer_errors, 1);
        assert_eq!(s.closed.misuse, 1);
        assert_eq!(s.closed.total(), 3);
        // A close never counted as accepted does not wrap the gauge.
        c.closed(None);
        assert_eq!(c.stats().active, 0);
        assert_eq!(c.stats().closed.aborted, 1);
    }

    #[test]
    fn a_signal_wakes_its_waiters_once_set() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let signal = Signal::default();
        assert!(signal.poll_set(&mut cx).is_pending());
        assert!(signal.poll_set(&mut cx).is_pending(), "registered once");
        signal.set();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(signal.poll_set(&mut cx).is_ready());
    }
}
