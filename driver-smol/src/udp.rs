//! A UDP endpoint as one task: `Async<UdpSocket>` adapted to the core's datagram task.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::task::{ready, Context as TaskContext, Poll};

use async_io::Async;
use asynchat_core::driver::{run_datagram_chat, PollDatagram};
use asynchat_core::{DatagramChat, DatagramProtocol};

use crate::conn::Deadline;

struct Socket(Async<UdpSocket>);

impl PollDatagram for Socket {
    fn poll_send_to(
        &mut self,
        cx: &mut TaskContext<'_>,
        payload: &[u8],
        peer: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.0.get_ref().send_to(payload, peer) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.0.poll_writable(cx))?
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_recv_from(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            match self.0.get_ref().recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.0.poll_readable(cx))?
                }
                result => return Poll::Ready(result),
            }
        }
    }
}

/// Runs `protocol` on `socket` until the protocol closes the endpoint.
pub async fn serve_udp<P: DatagramProtocol>(socket: Async<UdpSocket>, protocol: P) {
    run_datagram_chat(
        DatagramChat::new(protocol),
        Socket(socket),
        Deadline::default(),
    )
    .await;
}
