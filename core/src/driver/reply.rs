//! Request and response from ordinary code: a client protocol that hands every frame the peer
//! sends to a queue, and a [`Requester`] that pushes a request through the connection's
//! handle and waits for the reply, asynchronously on any runtime or blocking a thread.
//!
//! ```
//! use asynchat_core::driver::reply::replies;
//! use asynchat_core::testing::Harness;
//!
//! let (protocol, replies) = replies("\r\n");
//! let mut peer = Harness::new(protocol);
//! peer.send("+PONG\r\n+OK\r\n");
//! assert_eq!(replies.try_next().as_deref(), Some(&b"+PONG"[..]));
//! assert_eq!(replies.try_next().as_deref(), Some(&b"+OK"[..]));
//! assert_eq!(replies.try_next(), None);
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backlog::PushError;
use crate::chat::{CloseReason, Context, Frame, Protocol};
use crate::terminator::Terminator;

use super::ConnHandle;

#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// Why the connection closed, once it has.
    closed: Option<CloseReason>,
    waiters: Vec<Waker>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere while holding the lock leaves a queue that is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, mut queue: MutexGuard<'_, Queue>) {
        let waiters = std::mem::take(&mut queue.waiters);
        drop(queue);
        self.arrived.notify_all();
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// A client protocol whose frames (each ended by the terminator it was made with) go to its
/// [`Replies`]; see [`replies`].
pub struct ReplyProtocol {
    first: Terminator,
    shared: Arc<Shared>,
}

impl fmt::Debug for ReplyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyProtocol")
            .field("terminator", &self.first)
            .finish_non_exhaustive()
    }
}

/// The frames a [`ReplyProtocol`] received, in order, for ordinary code to take.
#[derive(Clone)]
pub struct Replies {
    shared: Arc<Shared>,
}

impl fmt::Debug for Replies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.shared.lock();
        f.debug_struct("Replies")
            .field("queued", &queue.frames.len())
            .field("closed", &queue.closed)
            .finish()
    }
}

/// A protocol for a client whose replies are frames ended by `terminator`, and the queue they
/// arrive in. Run the protocol on any driver (`connect`); read the queue from anywhere.
#[must_use]
pub fn replies(terminator: impl Into<Terminator>) -> (ReplyProtocol, Replies) {
    let shared = Arc::new(Shared::default());
    (
        ReplyProtocol {
            first: terminator.into(),
            shared: shared.clone(),
        },
        Replies { shared },
    )
}

impl Protocol for ReplyProtocol {
    fn first_terminator(&self) -> Terminator {
        self.first.clone()
    }

    fn found_terminator(&mut self, _: &mut Context<'_>, frame: Frame<'_>) {
        let mut queue = self.shared.lock();
        queue.frames.push_back(frame.into_bytes());
        self.shared.wake(queue);
    }

    fn closed(&mut self, reason: &CloseReason) {
        let mut queue = self.shared.lock();
        queue.closed = Some(reason.clone());
        self.shared.wake(queue);
    }
}

/// A protocol dropped without closing (its task dropped, its runtime shut down) still ends the
/// queue: a waiting reader learns it instead of waiting forever.
impl Drop for ReplyProtocol {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        if queue.closed.is_none() {
            queue.closed = Some(CloseReason::Aborted);
        }
        self.shared.wake(queue);
    }
}

impl Replies {
    /// The next frame if one has arrived.
    #[must_use]
    pub fn try_next(&self) -> Option<Bytes> {
        self.shared.lock().frames.pop_front()
    }

    /// Why the connection closed, once it has.
    #[must_use]
    pub fn closed(&self) -> Option<CloseReason> {
        self.shared.lock().closed.clone()
    }

    /// The next frame, waiting for it on any runtime; `Err` with the close reason once the
    /// connection has closed and every frame before the close has been taken.
    pub async fn next(&self) -> Result<Bytes, CloseReason> {
        std::future::poll_fn(|cx| {
            let mut queue = self.shared.lock();
            if let Some(frame) = queue.frames.pop_front() {
                return Poll::Ready(Ok(frame));
            }
            if let Some(reason) = &queue.closed {
                return Poll::Ready(Err(reason.clone()));
            }
            if !queue.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                queue.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// The next frame, blocking this thread for at most `timeout`: for code outside any
    /// runtime (a mio loop runs on a thread of its own).
    pub fn next_blocking(&self, timeout: Duration) -> Result<Bytes, RequestError> {
        let deadline = Instant::now() + timeout;
        let mut queue = self.shared.lock();
        loop {
            if let Some(frame) = queue.frames.pop_front() {
                return Ok(frame);
            }
            if let Some(reason) = &queue.closed {
                return Err(RequestError::Closed(reason.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RequestError::TimedOut);
            }
            queue = self
                .shared
                .arrived
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RequestError {
    /// The request could not be queued.
    Push(PushError),
    /// The connection closed before the reply came.
    Closed(CloseReason),
    /// No reply within the time allowed.
    TimedOut,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Push(e) => write!(f, "the request was not sent: {e}"),
            Self::Closed(reason) => write!(f, "the connection closed before the reply: {reason}"),
            Self::TimedOut => f.write_str("no reply in time"),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<PushError> for RequestError {
    fn from(e: PushError) -> Self {
        Self::Push(e)
    }
}

/// A client connection's handle and its replies: send a request, get its reply frame.
///
/// Replies come in the order requests were sent (a protocol that pipelines), so requests from
/// several tasks at once must not interleave on one requester. A request that timed out, or
/// whose future was dropped, leaves its reply in the queue, where the next request would take
/// it: after a [`RequestError::TimedOut`], drain [`replies`](Self::replies) or drop the
/// connection.
#[derive(Debug, Clone)]
pub struct Requester {
    conn: ConnHandle,
    replies: Replies,
}

impl Requester {
    /// Requests over `conn`, whose protocol is the [`ReplyProtocol`] behind `replies`.
    #[must_use]
    pub fn new(conn: ConnHandle, replies: Replies) -> Self {
        Self { conn, replies }
    }

    /// The connection's handle.
    #[must_use]
    pub fn conn(&self) -> &ConnHandle {
        &self.conn
    }

    /// The replies' queue (for replies of several frames, or frames the peer sends unasked).
    #[must_use]
    pub fn replies(&self) -> &Replies {
        &self.replies
    }

    /// Sends `request` and waits, on any runtime, for the next frame.
    pub async fn request(&self, request: impl Into<Bytes>) -> Result<Bytes, RequestError> {
        self.conn.push(request)?;
        self.replies.next().await.map_err(RequestError::Closed)
    }

    /// Sends `request` and blocks this thread, for at most `timeout`, for the next frame.
    pub fn request_blocking(
        &self,
        request: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.conn.push(request)?;
        self.replies.next_blocking(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Harness;

    #[test]
    fn frames_wait_in_order_and_the_close_is_reported_after_them() {
        let (protocol, replies) = replies("\n");
        let mut peer = Harness::new(protocol);
        peer.send("one\ntwo\n");
        peer.send_eof();
        assert_eq!(
            replies.next_blocking(Duration::ZERO),
            Ok(Bytes::from("one"))
        );
        assert_eq!(
            replies.next_blocking(Duration::ZERO),
            Ok(Bytes::from("two"))
        );
        assert!(matches!(
            replies.next_blocking(Duration::ZERO),
            Err(RequestError::Closed(CloseReason::PeerClosed))
        ));
    }

    #[test]
    fn a_blocked_reader_is_woken_by_a_frame_from_another_thread() {
        let (protocol, replies) = replies("\n");
        let writer = std::thread::spawn(move || {
            let mut peer = Harness::new(protocol);
            std::thread::sleep(Duration::from_millis(20));
            peer.send("late\n");
        });
        assert_eq!(
            replies.next_blocking(Duration::from_secs(5)),
            Ok(Bytes::from("late"))
        );
        writer.join().unwrap();
        // The protocol was dropped with its harness: the queue says so instead of waiting.
        assert!(matches!(
            replies.next_blocking(Duration::from_secs(5)),
            Err(RequestError::Closed(CloseReason::Aborted))
        ));
    }

    #[test]
    fn a_reply_that_does_not_come_times_out() {
        let (protocol, replies) = replies("\n");
        let _peer = Harness::new(protocol);
        assert_eq!(
            replies.next_blocking(Duration::from_millis(10)),
            Err(RequestError::TimedOut)
        );
    }
}
