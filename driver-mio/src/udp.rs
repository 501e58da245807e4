//! A UDP endpoint in the loop: a `DatagramChat` and its socket.

use crate::handle::Push;
use std::io;
use std::time::Instant;

use asynchat_core::{Bytes, DatagramChat, DatagramProtocol};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::conn::{Cx, Entry};

use asynchat_core::driver::{MAX_RECV_ERRORS, UDP_RECV_BUFFER as RECV_BUFFER};

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

    /// Sends what is queued and receives what has arrived, until neither moves.
    fn drive(&mut self, cx: &mut Cx<'_>) {
        loop {
            let mut moved = false;
            while let Some(d) = self.chat.poll_transmit() {
                match self.socket.send_to(&d.payload, d.peer) {
                    Ok(_) => {
                        self.chat.handle_sent();
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Any other error loses this datagram only, as UDP may.
                    Err(_) => self.chat.handle_sent(),
                }
            }
            let mut errors = 0;
            while self.chat.interest().readable {
                match self.socket.recv_from(&mut self.buf) {
                    Ok((n, peer)) => {
                        let payload = Bytes::copy_from_slice(&self.buf[..n]);
                        self.chat.handle_datagram(cx.now, peer, payload);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // ICMP errors from earlier sends (ECONNREFUSED...) surface here once each:
                    // not fatal. One that keeps coming back ends this pass instead of spinning.
                    Err(_) => {
                        errors += 1;
                        if errors == MAX_RECV_ERRORS {
                            break;
                        }
                    }
                }
            }
            if !moved || self.chat.is_closed() {
                break;
            }
        }
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
        self.chat.handle_timeout(cx.now);
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
