//! Reaching connections from anywhere: a registry of each connection's command channel.

use std::fmt;
use std::sync::Arc;

use asynchat_core::Bytes;

use asynchat_core::driver::{mailbox, Command, MailboxReceiver, MailboxSender, Registry};

/// Names one connection of a [`Handle`]'s server. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

/// A `Send + Clone` handle on a server's connections: push bytes to one, close it, or shut
/// them all down gracefully, from any task or thread.
#[derive(Clone, Default)]
pub struct Handle {
    registry: Arc<Registry<MailboxSender>>,
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

    pub(crate) fn register(&self) -> (ConnId, MailboxReceiver) {
        let (tx, rx) = mailbox();
        (ConnId(self.registry.insert(tx)), rx)
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        self.registry.remove(id.0);
    }

    fn send(&self, id: ConnId, command: Command) -> bool {
        self.registry
            .with(id.0, |tx| tx.send(command))
            .unwrap_or(false)
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
        self.registry.len()
    }

    /// Flushes and closes every connection.
    pub fn close_all_when_done(&self) {
        self.registry.for_each(|tx| {
            tx.send(Command::CloseWhenDone);
        });
    }
}
