//! The connection handle every driver hands out: one type, one set of return types, whatever
//! runtime carries the connection.
//!
//! A driver implements [`CommandSink`] once (a connection's [`MailboxSender`](super::MailboxSender)
//! on the task-per-connection drivers, the loop's command queue on mio) and wraps it with
//! [`ConnHandle::new`]. Protocols, other connections and other threads then talk to a
//! connection through [`ConnHandle`] only: code written against it runs unchanged on every
//! driver.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::backlog::PushError;
use crate::chat::CloseReason;
use crate::producer::Producer;

use super::Command;

/// Names one connection of a driver. Never reused by the driver that gave it out, so a handle
/// kept after its connection closed never reaches a newer connection.
///
/// Drivers choose the number ([`from_raw`](Self::from_raw)): mio packs a slot and its
/// generation into it, the task-per-connection drivers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// The id a driver chose (driver side).
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The number behind the id, for logs and maps.
    #[must_use]
    pub const fn into_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Where a driver takes commands for its connections (driver side).
///
/// `send` must not block and must not run the connection's callbacks: the command is carried
/// out on the connection's own task or loop, in the order sent.
pub trait CommandSink: Send + Sync {
    /// Queues `command` for connection `id`.
    ///
    /// Fails with [`PushError::Closed`] when the driver knows the connection (or its loop) is
    /// gone, and, for a push, with [`PushError::Full`] when the connection's backlog is over
    /// its bound ([`Backlog`](crate::backlog::Backlog)); nothing is queued then.
    fn send(&self, id: ConnId, command: Command) -> Result<(), PushError>;
}

/// A `Send + Clone` handle on one connection, from anywhere: another connection's callback,
/// another task, another thread, the code that opened a client connection.
///
/// Every method queues a command and returns at once; the connection carries it out on its
/// own task or loop, in the order sent. The same methods return the same results on every
/// driver:
///
/// - `Ok(())`: queued. A connection that closes before it gets there drops it, as a socket
///   drops what it could not send.
/// - [`PushError::Closed`]: the connection (or its driver) is known to be gone.
/// - [`PushError::Full`] (pushes only): the connection's output and the pushes in flight to it
///   cost more than four high water marks ([`Backlog`](crate::backlog::Backlog)). A push is
///   refused, never parked: the caller decides whether to drop the data, retry later or drop
///   the receiver ([`close_because`](Self::close_because)).
#[derive(Clone)]
pub struct ConnHandle {
    id: ConnId,
    sink: Arc<dyn CommandSink>,
}

impl fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ConnHandle {
    /// Two handles are equal when they reach the same connection of the same driver.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && std::ptr::addr_eq(Arc::as_ptr(&self.sink), Arc::as_ptr(&other.sink))
    }
}

impl Eq for ConnHandle {}

impl ConnHandle {
    /// A handle on connection `id`, whose commands go to `sink` (driver side).
    #[must_use]
    pub fn new(id: ConnId, sink: Arc<dyn CommandSink>) -> Self {
        Self { id, sink }
    }

    /// The connection this handle reaches.
    #[must_use]
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Queues `data` for the peer, as the protocol's `ctx.push` would.
    pub fn push(&self, data: impl Into<Bytes>) -> Result<(), PushError> {
        self.sink.send(self.id, Command::Push(data.into()))
    }

    /// Queues a producer, pulled lazily as the connection can write (a file, a generated
    /// body), as the protocol's `ctx.push_producer` would.
    pub fn push_producer(&self, producer: impl Producer + Send + 'static) -> Result<(), PushError> {
        self.sink
            .send(self.id, Command::PushProducer(Box::new(producer)))
    }

    /// Flushes what is queued, then closes: Python's `close_when_done`.
    pub fn close_when_done(&self) -> Result<(), PushError> {
        self.sink.send(self.id, Command::CloseWhenDone)
    }

    /// Closes now, dropping queued output ([`CloseReason::Aborted`]).
    pub fn close(&self) -> Result<(), PushError> {
        self.sink.send(self.id, Command::Close)
    }

    /// Closes now for `reason`, dropping queued output: the protocol's `closed` sees it (a slow
    /// receiver dropped by its sender: [`CloseReason::Error`] with
    /// [`Error::OutboxFull`](crate::Error::OutboxFull)).
    pub fn close_because(&self, reason: CloseReason) -> Result<(), PushError> {
        self.sink.send(self.id, Command::CloseBecause(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what it is sent; refuses everything once `closed`.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<(ConnId, String)>>,
        closed: std::sync::atomic::AtomicBool,
    }

    impl CommandSink for Recorder {
        fn send(&self, id: ConnId, command: Command) -> Result<(), PushError> {
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(PushError::Closed);
            }
            let what = match command {
                Command::Push(data) => format!("push {}", String::from_utf8_lossy(&data)),
                Command::PushProducer(mut p) => {
                    let mut all = Vec::new();
                    while let Some(chunk) = p.more() {
                        all.extend_from_slice(&chunk);
                    }
                    format!("producer {}", String::from_utf8_lossy(&all))
                }
                Command::CloseWhenDone => "close_when_done".into(),
                Command::Close => "close".into(),
                Command::CloseBecause(reason) => format!("close because {reason}"),
            };
            self.sent.lock().unwrap().push((id, what));
            Ok(())
        }
    }

    #[test]
    fn every_method_sends_its_command_to_its_own_connection() {
        let recorder = Arc::new(Recorder::default());
        let a = ConnHandle::new(ConnId::from_raw(7), recorder.clone());
        let b = ConnHandle::new(ConnId::from_raw(8), recorder.clone());
        a.push("hi").unwrap();
        b.push_producer(crate::producer::SimpleProducer::new("body", 2))
            .unwrap();
        a.close_when_done().unwrap();
        b.close().unwrap();
        a.close_because(CloseReason::Done).unwrap();
        let sent = recorder.sent.lock().unwrap().clone();
        let id = |n| ConnId::from_raw(n);
        assert_eq!(
            sent,
            [
                (id(7), "push hi".to_string()),
                (id(8), "producer body".to_string()),
                (id(7), "close_when_done".to_string()),
                (id(8), "close".to_string()),
                (id(7), format!("close because {}", CloseReason::Done)),
            ]
        );
        assert_eq!(a.id(), id(7));
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }

    #[test]
    fn a_refusal_reaches_the_caller() {
        let recorder = Arc::new(Recorder::default());
        let a = ConnHandle::new(ConnId::from_raw(1), recorder.clone());
        recorder
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(a.push("late"), Err(PushError::Closed));
        assert_eq!(a.close(), Err(PushError::Closed));
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<ConnHandle>();
        assert_eq!(ConnId::from_raw(3).to_string(), "#3");
    }
}
