//! Reaching connections from anywhere: a registry of each connection's command channel.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use asynchat_core::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use asynchat_core::driver::Command;

/// Names one connection of a [`Handle`]'s server. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

#[derive(Default)]
struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, UnboundedSender<Command>>>,
}

/// A `Send + Clone` handle on a server's connections: push bytes to one, close it, or shut
/// them all down gracefully, from any task or thread.
#[derive(Clone, Default)]
pub struct Handle {
    registry: Arc<Registry>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// A handle with no connections yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, UnboundedSender<Command>>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.registry
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn register(&self) -> (ConnId, UnboundedReceiver<Command>) {
        let id = self.registry.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded_channel();
        self.conns().insert(id, tx);
        (ConnId(id), rx)
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        self.conns().remove(&id.0);
    }

    fn send(&self, id: ConnId, command: Command) -> bool {
        self.conns()
            .get(&id.0)
            .is_some_and(|tx| tx.send(command).is_ok())
    }

    /// Queues `data` on connection `id`; `false` if it has closed.
    pub fn push(&self, id: ConnId, data: impl Into<Bytes>) -> bool {
        self.send(id, Command::Push(data.into()))
    }

    /// Flushes connection `id`, then closes it; `false` if it has closed.
    pub fn close_when_done(&self, id: ConnId) -> bool {
        self.send(id, Command::CloseWhenDone)
    }

    /// Closes connection `id` now, dropping its queued output; `false` if it has closed.
    pub fn close(&self, id: ConnId) -> bool {
        self.send(id, Command::Close)
    }

    /// Connections open now.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.conns().len()
    }

    /// Flushes and closes every connection.
    pub fn close_all_when_done(&self) {
        for tx in self.conns().values() {
            let _ = tx.send(Command::CloseWhenDone);
        }
    }
}
