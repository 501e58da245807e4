//! A UDP endpoint as one task: `tokio::net::UdpSocket` adapted to the core's datagram task.

use std::io;
use std::net::SocketAddr;
use std::task::{Context as TaskContext, Poll};

use asynchat_core::driver::{run_datagram_chat, PollDatagram};
use asynchat_core::{DatagramChat, DatagramProtocol};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

use crate::conn::Timer;

struct Socket(UdpSocket);

impl PollDatagram for Socket {
    fn poll_send_to(
        &mut self,
        cx: &mut TaskContext<'_>,
        payload: &[u8],
        peer: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.0.poll_send_to(cx, payload, peer)
    }

    fn poll_recv_from(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut read = ReadBuf::new(buf);
        self.0
            .poll_recv_from(cx, &mut read)
            .map_ok(|peer| (read.filled().len(), peer))
    }
}

/// Runs `protocol` on `socket` until the protocol closes the endpoint.
pub async fn serve_udp<P: DatagramProtocol>(socket: UdpSocket, protocol: P) {
    run_datagram_chat(
        DatagramChat::new(protocol),
        Socket(socket),
        Timer::default(),
    )
    .await;
}
