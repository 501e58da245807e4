//! A UDP endpoint in the loop: a `DatagramChat` and its socket.

use crate::handle::Push;
use std::io;
use std::time::Instant;

use std::net::SocketAddr;
use std::task::{Context as TaskContext, Poll};

use asynchat_core::driver::{poll_datagram_chat, PollDatagram};
use asynchat_core::{DatagramChat, DatagramProtocol};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::conn::{Cx, Entry};
use crate::io::{no_waker, Turn};

use asynchat_core::driver::UDP_RECV_BUFFER as RECV_BUFFER;

pub(crate) struct UdpEntry<P> {
    chat: DatagramChat<P>,
    socket: UdpSocket,
    buf: Box<[u8]>,
    write_registered: bool,
    finished: bool,
}

impl<P: DatagramProtocol> UdpEntry<P> {
    pub(crate) fn new(chat: DatagramChat<P>, socket: UdpSocket) -> Self {
        Self {
            chat,
            socket,
            buf: vec![0; RECV_BUFFER].into_boxed_slice(),
            write_registered: false,
            finished: false,
        }
    }

    /// Sends what is queued and receives what has arrived with the core's datagram loop,
    /// until neither moves; then registers write interest only while sends are pending.
    fn drive(&mut self, cx: &mut Cx<'_>) {
        let mut turn = Turn::new(cx.now);
        let _ = poll_datagram_chat(
            &mut self.chat,
            &mut Polled(&mut self.socket),
            &mut turn,
            &mut self.buf,
            &mut TaskContext::from_waker(no_waker()),
        );
        self.finished = self.chat.is_closed();
        let want_write = self.chat.interest().writable;
        if want_write != self.write_registered && !self.finished {
            self.write_registered = want_write;
            let interest = crate::io::interest(want_write);
            if cx
                .registry
                .reregister(&mut self.socket, cx.token, interest)
                .is_err()
            {
                self.chat.close();
                self.finished = true;
            }
        }
    }
}

/// A mio UDP socket as the core's datagram loop sees it: `WouldBlock` is `Pending` (readiness
/// events, not a waker, bring the endpoint back).
struct Polled<'a>(&'a mut UdpSocket);

/// `WouldBlock` as `Pending`.
fn pending_if_blocked<T>(result: io::Result<T>) -> Poll<io::Result<T>> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        result => Poll::Ready(result),
    }
}

impl PollDatagram for Polled<'_> {
    fn poll_send_to(
        &mut self,
        _: &mut TaskContext<'_>,
        payload: &[u8],
        peer: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        pending_if_blocked(self.0.send_to(payload, peer))
    }

    fn poll_recv_from(
        &mut self,
        _: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        pending_if_blocked(self.0.recv_from(buf))
    }
}

impl<P: DatagramProtocol> Entry for UdpEntry<P> {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, Interest::READABLE)
    }

    fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.socket);
    }

    fn on_ready(&mut self, cx: &mut Cx<'_>, _readable: bool, _writable: bool) {
        self.drive(cx);
    }

    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        // The core's loop fires the due deadline.
        self.drive(cx);
    }

    fn on_push(&mut self, _cx: &mut Cx<'_>, _push: Push) {
        // A datagram needs a destination: pushing bytes to an endpoint has no meaning.
    }

    fn on_close(&mut self, _cx: &mut Cx<'_>, _graceful: bool) {
        self.chat.close();
        self.finished = true;
    }

    fn deadline(&self) -> Option<Instant> {
        self.chat.poll_timeout()
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}
