//! Reaching a loop from outside it: another connection's callback or another thread.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::collections::HashMap;

use asynchat_core::backlog::{push_cost, Backlog, PushError};
use asynchat_core::CloseReason;
use bytes::Bytes;
use mio::Waker;

/// Names one connection (or listener, or UDP endpoint) of one [`EventLoop`](crate::EventLoop).
///
/// It carries a generation as well as a slot number, so an id kept after its connection closed
/// never reaches the connection that later takes the same slot (asyncore delivered events to
/// the wrong dispatcher when a file descriptor was reused, bpo-30931).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) key: usize,
    pub(crate) generation: u64,
}

pub(crate) enum Command {
    /// The bytes, and the backlog they were counted in (released as the loop takes them).
    Push(ConnId, Bytes, Arc<Backlog>),
    CloseWhenDone(ConnId),
    Close(ConnId),
    CloseBecause(ConnId, CloseReason),
    Shutdown,
    Stop,
}

pub(crate) struct Shared {
    queue: Mutex<VecDeque<Command>>,
    waker: Waker,
    stop: AtomicBool,
    /// The push bound of every connection pushed to through a handle, by id: made by the
    /// first push (an idle connection nobody pushes to costs nothing here), removed by the loop
    /// when the connection closes or a push finds it gone.
    backlogs: Mutex<HashMap<ConnId, Arc<Backlog>>>,
    /// The high water mark of the loop's connections (`Config::high_water`).
    high_water: usize,
}

impl Shared {
    pub(crate) fn new(waker: Waker, high_water: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            waker,
            stop: AtomicBool::new(false),
            backlogs: Mutex::new(HashMap::new()),
            high_water,
        }
    }

    fn backlogs(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Arc<Backlog>>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.backlogs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets connection `id`'s bound: it has closed.
    pub(crate) fn remove_backlog(&self, id: ConnId) {
        self.backlogs().remove(&id);
    }

    /// Connection `id`'s bound, made on first use.
    fn backlog(&self, id: ConnId) -> Arc<Backlog> {
        self.backlogs()
            .entry(id)
            .or_insert_with(|| Arc::new(Backlog::for_high_water(self.high_water)))
            .clone()
    }

    pub(crate) fn take_commands(&self) -> VecDeque<Command> {
        // A panic elsewhere while holding the lock leaves a queue that is still consistent.
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// A `Send + Clone` handle on an [`EventLoop`](crate::EventLoop): push bytes to a connection,
/// close it, or stop the loop, from another connection's callback or from another thread.
///
/// Commands are queued and the loop is woken (a mio `Waker`); they run in the order they were
/// sent, on the loop's thread, at its next turn.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    fn send(&self, command: Command) -> io::Result<()> {
        let was_empty = {
            let mut queue = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.push_back(command);
            queue.len() == 1
        };
        // The loop takes the whole queue at once, so only the command that made it non-empty
        // needs to wake the loop: a burst of pushes (a chat broadcast) costs one wake-up, not
        // one `eventfd` write each. Waking after the lock is released keeps the order safe: a
        // command queued behind another is taken with it, after that one's wake-up.
        if was_empty {
            self.shared.waker.wake()
        } else {
            Ok(())
        }
    }

    /// Queues `data` on connection `id`, as its protocol's `ctx.push` would. Refused, with
    /// nothing queued, when its output and the pushes in flight to it are above four high
    /// water marks ([`PushError::Full`]; see [`asynchat_core::backlog`]): the caller is never
    /// blocked, and decides whether to drop the data, retry later or drop the receiver
    /// ([`close_because`](Self::close_because)). [`PushError::Closed`] if the loop is gone; a
    /// push to a connection that has closed is dropped by the loop.
    pub fn push(&self, id: ConnId, data: impl Into<Bytes>) -> Result<(), PushError> {
        let data = data.into();
        let backlog = self.shared.backlog(id);
        let cost = push_cost(data.len());
        backlog.try_reserve(cost)?;
        if self.send(Command::Push(id, data, backlog.clone())).is_err() {
            // The loop's waker failed: the loop is gone, and the push with it.
            backlog.release(cost);
            return Err(PushError::Closed);
        }
        Ok(())
    }

    /// Closes connection `id` now for `reason`, dropping its queued output: its protocol's
    /// `closed` sees that reason.
    pub fn close_because(&self, id: ConnId, reason: CloseReason) -> io::Result<()> {
        self.send(Command::CloseBecause(id, reason))
    }

    /// Flushes connection `id`, then closes it.
    pub fn close_when_done(&self, id: ConnId) -> io::Result<()> {
        self.send(Command::CloseWhenDone(id))
    }

    /// Closes connection `id` now, dropping its queued output.
    pub fn close(&self, id: ConnId) -> io::Result<()> {
        self.send(Command::Close(id))
    }

    /// Graceful shutdown: stops accepting, flushes and closes every connection, and makes
    /// [`EventLoop::run`](crate::EventLoop::run) return once all are gone.
    pub fn shutdown(&self) -> io::Result<()> {
        self.send(Command::Shutdown)
    }

    /// Makes [`EventLoop::run`](crate::EventLoop::run) return at its next turn, leaving
    /// connections as they are.
    pub fn stop(&self) -> io::Result<()> {
        self.shared.stop.store(true, Ordering::Release);
        self.send(Command::Stop)
    }
}
