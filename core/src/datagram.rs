//! UDP: a protocol that receives `(peer, Bytes)` and sends zero or more datagrams in reply —
//! asyncore's `dispatcher` over a `SOCK_DGRAM` socket, sans-IO. No framing: a datagram is a frame.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::timers::Timers;

/// The largest UDP payload over IPv4 (65 535 − 8 UDP header − 20 IP header).
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// Default limit on bytes of datagrams queued for sending: 4 MiB.
pub const DEFAULT_DATAGRAM_QUEUE_LIMIT: usize = 4 * 1024 * 1024;

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Where it goes.
    pub peer: SocketAddr,
    /// What it carries.
    pub payload: Bytes,
}

/// A datagram protocol: one callback per datagram received.
///
/// ```
/// use std::net::SocketAddr;
/// use asynchat_core::{Bytes, DatagramContext, DatagramProtocol};
///
/// struct Echo;
/// impl DatagramProtocol for Echo {
///     fn handle_datagram(&mut self, ctx: &mut DatagramContext<'_>, peer: SocketAddr, data: Bytes) {
///         ctx.send(peer, data);
///     }
/// }
/// ```
pub trait DatagramProtocol {
    /// A datagram arrived from `peer`.
    fn handle_datagram(&mut self, ctx: &mut DatagramContext<'_>, peer: SocketAddr, payload: Bytes);

    /// Deadline `id` passed ([`DatagramContext::set_timer`]).
    fn timeout(&mut self, ctx: &mut DatagramContext<'_>, id: u32) {
        let _ = (ctx, id);
    }

    /// The endpoint closed; called once, last.
    fn closed(&mut self) {}
}

#[derive(Debug)]
struct Core {
    queue: VecDeque<Datagram>,
    queued: usize,
    limit: usize,
    dropped: u64,
    timers: Timers,
    closed: bool,
}

/// What a [`DatagramProtocol`] callback can do.
#[derive(Debug)]
pub struct DatagramContext<'a> {
    core: &'a mut Core,
    now: Instant,
}

impl DatagramContext<'_> {
    /// Queues a datagram. UDP may lose datagrams anyway, so one that cannot be sent — larger
    /// than [`MAX_UDP_PAYLOAD`], or past the queue limit — is dropped and counted
    /// ([`DatagramChat::dropped`]) rather than failing the endpoint.
    pub fn send(&mut self, peer: SocketAddr, payload: impl Into<Bytes>) {
        let payload = payload.into();
        let core = &mut *self.core;
        if core.closed
            || payload.len() > MAX_UDP_PAYLOAD
            || core.queued + payload.len() > core.limit
        {
            core.dropped += 1;
            return;
        }
        core.queued += payload.len();
        core.queue.push_back(Datagram { peer, payload });
    }

    /// Arms (or re-arms) deadline `id` at `at`.
    pub fn set_timer(&mut self, id: u32, at: Instant) {
        self.core.timers.set(id, at);
    }

    /// Disarms deadline `id`.
    pub fn cancel_timer(&mut self, id: u32) {
        self.core.timers.cancel(id);
    }

    /// The time of the event being handled.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Bytes of datagrams queued and not yet sent.
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.core.queued
    }

    /// Closes the endpoint: queued datagrams are dropped.
    pub fn close(&mut self) {
        self.core.closed = true;
    }
}

/// A UDP endpoint driven by plain method calls, like [`Chat`](crate::Chat) for streams.
///
/// The driver reports [`handle_datagram`](Self::handle_datagram) and
/// [`handle_timeout`](Self::handle_timeout), sends [`poll_transmit`](Self::poll_transmit) and
/// reports [`handle_sent`](Self::handle_sent) (also when a send failed for good: the datagram is
/// then lost, as UDP allows); on `WouldBlock` it keeps the datagram and retries when writable.
///
/// # Security
///
/// Reading stops while the send queue is above half its limit (default
/// [`DEFAULT_DATAGRAM_QUEUE_LIMIT`]), so a flood of requests cannot queue replies without bound.
pub struct DatagramChat<P> {
    protocol: P,
    core: Core,
    closed_notified: bool,
}

impl<P: fmt::Debug> fmt::Debug for DatagramChat<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramChat")
            .field("protocol", &self.protocol)
            .field("core", &self.core)
            .finish()
    }
}

impl<P: DatagramProtocol> DatagramChat<P> {
    /// An open endpoint with the default queue limit.
    pub fn new(protocol: P) -> Self {
        Self {
            protocol,
            core: Core {
                queue: VecDeque::new(),
                queued: 0,
                limit: DEFAULT_DATAGRAM_QUEUE_LIMIT,
                dropped: 0,
                timers: Timers::default(),
                closed: false,
            },
            closed_notified: false,
        }
    }

    /// Sets the limit on bytes of queued datagrams.
    #[must_use]
    pub fn with_queue_limit(mut self, limit: usize) -> Self {
        self.core.limit = limit;
        self
    }

    /// A datagram arrived from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, payload: Bytes) {
        if self.core.closed {
            return;
        }
        self.callback(now, |p, ctx| p.handle_datagram(ctx, peer, payload));
    }

    /// Time passed: fires every deadline at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let round = self.core.timers.round();
        while !self.core.closed {
            let Some(id) = self.core.timers.pop_expired(now, round) else {
                break;
            };
            self.callback(now, |p, ctx| p.timeout(ctx, id));
        }
    }

    /// The next datagram to send, if any. It stays queued until [`handle_sent`](Self::handle_sent).
    #[must_use]
    pub fn poll_transmit(&self) -> Option<&Datagram> {
        self.core.queue.front()
    }

    /// The datagram from [`poll_transmit`](Self::poll_transmit) was sent (or failed for good).
    pub fn handle_sent(&mut self) {
        if let Some(d) = self.core.queue.pop_front() {
            self.core.queued -= d.payload.len();
        }
        if self.core.queue.is_empty() {
            self.core.queue = VecDeque::new();
        }
    }

    /// The earliest deadline, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.core.closed {
            return None;
        }
        self.core.timers.next()
    }

    /// Read while the send queue is at most half full; write while it is not empty.
    #[must_use]
    pub fn interest(&self) -> crate::Interest {
        crate::Interest {
            readable: !self.core.closed && self.core.queued <= self.core.limit / 2,
            writable: !self.core.closed && !self.core.queue.is_empty(),
        }
    }

    /// Closes the endpoint (driver side); queued datagrams are dropped.
    pub fn close(&mut self) {
        self.core.closed = true;
        self.notify_closed();
    }

    /// Whether the endpoint is closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.core.closed
    }

    /// Datagrams dropped because they were too large or the queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.core.dropped
    }

    /// The protocol.
    #[must_use]
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// The protocol, mutably.
    pub fn protocol_mut(&mut self) -> &mut P {
        &mut self.protocol
    }

    fn callback(&mut self, now: Instant, f: impl FnOnce(&mut P, &mut DatagramContext<'_>)) {
        let mut ctx = DatagramContext {
            core: &mut self.core,
            now,
        };
        f(&mut self.protocol, &mut ctx);
        self.notify_closed();
    }

    fn notify_closed(&mut self) {
        if self.core.closed && !self.closed_notified {
            self.closed_notified = true;
            self.core.queue = VecDeque::new();
            self.core.queued = 0;
            self.core.timers.clear();
            self.protocol.closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Echo {
        closed: bool,
    }

    impl DatagramProtocol for Echo {
        fn handle_datagram(
            &mut self,
            ctx: &mut DatagramContext<'_>,
            peer: SocketAddr,
            data: Bytes,
        ) {
            if &data[..] == b"quit" {
                ctx.close();
                return;
            }
            if &data[..] == b"later" {
                ctx.set_timer(7, ctx.now() + Duration::from_secs(1));
                return;
            }
            ctx.send(peer, data.clone());
            ctx.send(peer, data);
        }
        fn timeout(&mut self, ctx: &mut DatagramContext<'_>, id: u32) {
            ctx.send("127.0.0.1:9".parse().unwrap(), format!("timer {id}"));
        }
        fn closed(&mut self) {
            self.closed = true;
        }
    }

    #[test]
    fn replies_queue_in_order_until_sent() {
        let now = Instant::now();
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut ep = DatagramChat::new(Echo { closed: false });
        ep.handle_datagram(now, peer, Bytes::from_static(b"ping"));
        assert!(ep.interest().writable);
        let d = ep.poll_transmit().unwrap().clone();
        assert_eq!(
            d,
            Datagram {
                peer,
                payload: Bytes::from_static(b"ping")
            }
        );
        ep.handle_sent();
        ep.handle_sent();
        assert!(ep.poll_transmit().is_none());
        assert!(!ep.interest().writable);
    }

    #[test]
    fn oversized_and_overflowing_datagrams_are_dropped_and_counted() {
        let now = Instant::now();
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut ep = DatagramChat::new(Echo { closed: false }).with_queue_limit(10);
        ep.handle_datagram(now, peer, Bytes::from(vec![0u8; MAX_UDP_PAYLOAD + 1]));
        assert_eq!(ep.dropped(), 2);
        ep.handle_datagram(now, peer, Bytes::from_static(b"123456"));
        assert_eq!(ep.dropped(), 3, "the second copy does not fit");
        assert!(!ep.interest().readable, "queue above half its limit");
    }

    #[test]
    fn timers_fire_and_close_notifies_once() {
        let now = Instant::now();
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut ep = DatagramChat::new(Echo { closed: false });
        ep.handle_datagram(now, peer, Bytes::from_static(b"later"));
        assert_eq!(ep.poll_timeout(), Some(now + Duration::from_secs(1)));
        ep.handle_timeout(now + Duration::from_millis(999));
        assert!(ep.poll_transmit().is_none());
        ep.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(&ep.poll_transmit().unwrap().payload[..], b"timer 7");
        ep.handle_datagram(now, peer, Bytes::from_static(b"quit"));
        assert!(ep.is_closed() && ep.protocol().closed);
        assert!(ep.poll_transmit().is_none());
        assert_eq!(ep.interest(), crate::Interest::default());
    }
}
