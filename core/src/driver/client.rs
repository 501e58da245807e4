//! A connection outside any server (a client, or a stream handed over by its owner): its
//! handle and its task, the same on every async driver.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use crate::chat::CloseReason;

use super::{mailbox, ConnHandle, ConnId, MailboxReceiver};

/// Ids of connections outside a server count down from the top, so that they never meet the
/// ids a server counts up from zero.
static NEXT_OUTSIDE_ID: AtomicU64 = AtomicU64::new(u64::MAX);

/// A handle and a mailbox for a connection outside any server (driver side): its task polls
/// the receiver, and the handle reaches it from anywhere.
#[must_use]
pub fn outside_server(high_water: usize) -> (ConnHandle, MailboxReceiver) {
    let (tx, rx) = mailbox(high_water);
    let id = ConnId::from_raw(NEXT_OUTSIDE_ID.fetch_sub(1, Ordering::Relaxed));
    (ConnHandle::new(id, Arc::new(tx)), rx)
}

/// Reports a client's connect, and its failure (driver side: with the `tracing` feature, an
/// event; without it, nothing).
pub fn connected(peer: &dyn fmt::Display, result: Result<(), &std::io::Error>) {
    match result {
        Ok(()) => {
            crate::trace::event!(debug, %peer, "connected");
        }
        Err(error) => {
            crate::trace::event!(info, %peer, %error, "connect failed");
            let _ = error;
        }
    }
    let _ = peer;
}

/// One connection's task and its handle: await it (or spawn it on the runtime) to run the
/// connection; it returns why the connection closed. Its handle pushes to it and closes it from
/// anywhere, before and while it runs.
///
/// `Send + 'static`, so it can be spawned as it is.
#[must_use = "a connection does nothing until it is awaited or spawned"]
pub struct Connection {
    handle: ConnHandle,
    task: Pin<Box<dyn Future<Output = CloseReason> + Send>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection whose task is `task`, reached through `handle` (driver side).
    pub fn new(
        handle: ConnHandle,
        task: impl Future<Output = CloseReason> + Send + 'static,
    ) -> Self {
        Self {
            handle,
            task: Box::pin(task),
        }
    }

    /// The connection's handle (clone it to keep it after spawning the connection).
    #[must_use]
    pub fn handle(&self) -> ConnHandle {
        self.handle.clone()
    }
}

impl Future for Connection {
    type Output = CloseReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<CloseReason> {
        self.task.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_ids_never_repeat_and_stay_clear_of_server_ids() {
        let (a, _ra) = outside_server(1 << 16);
        let (b, _rb) = outside_server(1 << 16);
        assert_ne!(a.id(), b.id());
        assert!(a.id().into_raw() > u64::MAX / 2 && b.id().into_raw() > u64::MAX / 2);
    }
}
