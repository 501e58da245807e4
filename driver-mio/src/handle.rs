//! Reaching a loop from outside it: another connection's callback or another thread.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::collections::HashMap;

use asynchat_core::backlog::{push_cost, Backlog, PushError};
use asynchat_core::driver::ConnId;
use asynchat_core::driver::{
    self as core_driver, CommandSink, ConnHandle, Counters, ServerControl, ServerHandle,
    ServerStats,
};
use asynchat_core::producer::Producer;
use asynchat_core::CloseReason;
use bytes::Bytes;
use mio::Waker;

/// Where a connection (or listener, or UDP endpoint) lives in its loop: a slot and the
/// generation of its occupant, so an id kept after its connection closed never reaches the
/// connection that later takes the same slot (asyncore delivered events to the wrong dispatcher
/// when a file descriptor was reused, bpo-30931).
///
/// The public [`ConnId`] packs both: the slot in the low 32 bits, the generation (counted
/// modulo 2^32) in the high ones. A stale id would need the same slot to be reused 2^32
/// connections later to reach a newer occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) key: usize,
    pub(crate) generation: u32,
}

impl Key {
    pub(crate) fn id(self) -> ConnId {
        ConnId::from_raw((u64::from(self.generation) << 32) | self.key as u64)
    }

    pub(crate) fn of(id: ConnId) -> Self {
        let raw = id.into_raw();
        Self {
            key: (raw & u64::from(u32::MAX)) as usize,
            generation: (raw >> 32) as u32,
        }
    }
}

/// Output pushed through a handle.
pub(crate) enum Push {
    Bytes(Bytes),
    Producer(Box<dyn Producer + Send>),
}

impl Push {
    /// What it counts against its connection's backlog while in flight (a producer's bytes
    /// are counted as the outbox pulls them).
    pub(crate) fn cost(&self) -> usize {
        match self {
            Self::Bytes(data) => push_cost(data.len()),
            Self::Producer(_) => push_cost(0),
        }
    }
}

pub(crate) enum Command {
    /// The output, and the backlog it was counted in (released as the loop takes it).
    Push(Key, Push, Arc<Backlog>),
    CloseWhenDone(Key),
    Close(Key),
    CloseBecause(Key, CloseReason),
    /// Graceful shutdown; what is still open after the deadline (if any) is closed.
    Shutdown(Option<Duration>),
    /// Close every listener; connections go on.
    StopAccepting,
    Stop,
}

/// What the loop tells its handles: which slots hold whom, and the push bound of every
/// connection pushed to. One lock for both: a push checks the first and takes the second.
#[derive(Default)]
struct Book {
    /// The generation of each slot's occupant and what it is, by slot number; generation 0
    /// for a vacant slot.
    live: Vec<(u32, Role)>,
    /// The push bound of every connection pushed to through a handle, by id: made by the
    /// first push (an idle connection nobody pushes to costs nothing here), removed by the
    /// loop when the connection closes.
    backlogs: HashMap<Key, Arc<Backlog>>,
}

/// What occupies a slot, as the handles need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Role {
    /// A listener, a UDP endpoint, a raw dispatcher: closed by id, never pushed to.
    #[default]
    Other,
    /// A stream connection (a client, a pipe): takes pushes.
    Stream,
    /// A stream connection a listener accepted: takes pushes, and is one of the server's.
    Accepted,
}

impl Book {
    fn role(&self, id: Key) -> Option<Role> {
        match self.live.get(id.key) {
            Some(&(generation, role)) if generation == id.generation => Some(role),
            _ => None,
        }
    }

    fn is_live(&self, id: Key) -> bool {
        self.role(id).is_some()
    }
}

pub(crate) struct Shared {
    queue: Mutex<VecDeque<Command>>,
    waker: Waker,
    stop: AtomicBool,
    /// The loop has been dropped: nothing sent will ever be carried out.
    gone: AtomicBool,
    /// This very `Shared`, so that it can hand out handles on itself.
    me: std::sync::Weak<Self>,
    book: Mutex<Book>,
    /// What the loop's listeners accepted, refused, failed to accept, and how their
    /// connections closed.
    pub(crate) counters: Counters,
    /// The high water mark of the loop's connections (`Config::high_water`).
    high_water: usize,
}

impl Shared {
    pub(crate) fn new(waker: Waker, high_water: usize) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            queue: Mutex::new(VecDeque::new()),
            waker,
            stop: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            me: me.clone(),
            book: Mutex::new(Book::default()),
            counters: Counters::default(),
            high_water,
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // A panic elsewhere while holding the lock leaves a book that is still consistent.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Slot `id.key` is now `id`'s.
    pub(crate) fn arrived(&self, id: Key, role: Role) {
        let mut book = self.book();
        if book.live.len() <= id.key {
            book.live.resize(id.key + 1, (0, Role::Other));
        }
        book.live[id.key] = (id.generation, role);
    }

    /// `id` has gone: its slot is vacant, its bound forgotten.
    pub(crate) fn left(&self, id: Key) {
        let mut book = self.book();
        if let Some(slot) = book.live.get_mut(id.key) {
            if slot.0 == id.generation {
                *slot = (0, Role::Other);
            }
        }
        book.backlogs.remove(&id);
    }

    /// Connection `id`'s bound, made on first use; `None` if it has gone, or takes no pushes.
    fn backlog(&self, id: Key) -> Option<Arc<Backlog>> {
        let mut book = self.book();
        if !matches!(book.role(id), Some(Role::Stream | Role::Accepted)) {
            return None;
        }
        Some(
            book.backlogs
                .entry(id)
                .or_insert_with(|| Arc::new(Backlog::for_high_water(self.high_water)))
                .clone(),
        )
    }

    fn is_live(&self, id: Key) -> bool {
        self.book().is_live(id)
    }

    pub(crate) fn take_commands(&self) -> VecDeque<Command> {
        // A panic elsewhere while holding the lock leaves a queue that is still consistent.
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The loop is being dropped: later commands fail with [`PushError::Closed`].
    pub(crate) fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn send(&self, command: Command) -> Result<(), PushError> {
        if self.gone.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        let was_empty = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.push_back(command);
            queue.len() == 1
        };
        // The loop takes the whole queue at once, so only the command that made it non-empty
        // needs to wake the loop: a burst of pushes (a chat broadcast) costs one wake-up, not
        // one `eventfd` write each. Waking after the lock is released keeps the order safe: a
        // command queued behind another is taken with it, after that one's wake-up.
        if was_empty {
            self.waker.wake().map_err(|_| PushError::Closed)
        } else {
            Ok(())
        }
    }

    /// `command` for `id`, refused if `id` has gone.
    fn send_to(&self, id: Key, command: Command) -> Result<(), PushError> {
        if !self.is_live(id) {
            return Err(PushError::Closed);
        }
        self.send(command)
    }

    fn push(&self, id: Key, push: Push) -> Result<(), PushError> {
        let backlog = self.backlog(id).ok_or(PushError::Closed)?;
        let cost = push.cost();
        backlog.try_reserve(cost)?;
        if let Err(e) = self.send(Command::Push(id, push, backlog.clone())) {
            backlog.release(cost);
            return Err(e);
        }
        Ok(())
    }
}

impl ServerControl for Shared {
    fn stop_accepting(&self) {
        let _ = self.send(Command::StopAccepting);
    }

    fn shutdown(&self, deadline: Duration) {
        let _ = self.send(Command::Shutdown(Some(deadline)));
    }

    fn conn(&self, id: ConnId) -> Option<ConnHandle> {
        if self.book().role(Key::of(id)) != Some(Role::Accepted) {
            return None;
        }
        Some(ConnHandle::new(id, self.me.upgrade()?))
    }

    fn for_each_conn(&self, f: &mut dyn FnMut(ConnHandle)) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let ids: Vec<Key> = {
            let book = self.book();
            book.live
                .iter()
                .enumerate()
                .filter(|(_, (g, role))| *g != 0 && *role == Role::Accepted)
                .map(|(key, &(generation, _))| Key { key, generation })
                .collect()
        };
        for id in ids {
            f(ConnHandle::new(id.id(), me.clone()));
        }
    }

    fn stats(&self) -> ServerStats {
        self.counters.stats()
    }
}

impl CommandSink for Shared {
    fn send(&self, id: ConnId, command: core_driver::Command) -> Result<(), PushError> {
        let key = Key::of(id);
        match command {
            core_driver::Command::Push(data) => self.push(key, Push::Bytes(data)),
            core_driver::Command::PushProducer(p) => self.push(key, Push::Producer(p)),
            core_driver::Command::CloseWhenDone => self.send_to(key, Command::CloseWhenDone(key)),
            core_driver::Command::Close => self.send_to(key, Command::Close(key)),
            core_driver::Command::CloseBecause(reason) => {
                self.send_to(key, Command::CloseBecause(key, reason))
            }
            // A command this driver does not know yet: refused, not dropped in silence.
            _ => Err(PushError::Closed),
        }
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
    /// A handle on connection `id` of this loop: the same type, with the same results, as on
    /// every other driver.
    #[must_use]
    pub fn conn(&self, id: ConnId) -> ConnHandle {
        ConnHandle::new(id, self.shared.clone())
    }

    /// What the loop's listeners have counted so far.
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.stats()
    }

    /// Queues `data` on connection `id`, as its protocol's `ctx.push` would. Refused, with
    /// nothing queued, when its output and the pushes in flight to it are above four high
    /// water marks ([`PushError::Full`]; see [`asynchat_core::backlog`]): the caller is never
    /// blocked, and decides whether to drop the data, retry later or drop the receiver
    /// ([`close_because`](Self::close_because)). [`PushError::Closed`] if the loop is gone; a
    /// push to a connection that has closed, or to an id that is not a stream connection (a
    /// listener, a UDP endpoint), is refused with [`PushError::Closed`] too.
    pub fn push(&self, id: ConnId, data: impl Into<Bytes>) -> Result<(), PushError> {
        self.shared.push(Key::of(id), Push::Bytes(data.into()))
    }

    /// Closes connection `id` now for `reason`, dropping its queued output: its protocol's
    /// `closed` sees that reason.
    pub fn close_because(&self, id: ConnId, reason: CloseReason) -> Result<(), PushError> {
        self.shared
            .send_to(Key::of(id), Command::CloseBecause(Key::of(id), reason))
    }

    /// Flushes connection `id`, then closes it.
    pub fn close_when_done(&self, id: ConnId) -> Result<(), PushError> {
        self.shared
            .send_to(Key::of(id), Command::CloseWhenDone(Key::of(id)))
    }

    /// Closes connection `id` now, dropping its queued output (a listener or UDP endpoint
    /// too: closing a listener stops accepting on it).
    pub fn close(&self, id: ConnId) -> Result<(), PushError> {
        self.shared
            .send_to(Key::of(id), Command::Close(Key::of(id)))
    }

    /// Graceful shutdown: stops accepting, flushes and closes every connection, and makes
    /// [`EventLoop::run`](crate::EventLoop::run) return once all are gone. No deadline: see
    /// [`shutdown_within`](Self::shutdown_within).
    pub fn shutdown(&self) -> Result<(), PushError> {
        self.shared.send(Command::Shutdown(None))
    }

    /// [`shutdown`](Self::shutdown), closing (dropping their output) the connections still
    /// open after `deadline`.
    pub fn shutdown_within(&self, deadline: Duration) -> Result<(), PushError> {
        self.shared.send(Command::Shutdown(Some(deadline)))
    }

    /// The loop as a server, seen through the handle every driver hands out: its
    /// connections, counters and shutdown.
    #[must_use]
    pub fn server(&self) -> ServerHandle {
        ServerHandle::new(self.shared.clone())
    }

    /// Makes [`EventLoop::run`](crate::EventLoop::run) return at its next turn, leaving
    /// connections as they are.
    pub fn stop(&self) -> Result<(), PushError> {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.send(Command::Stop)
    }
}
