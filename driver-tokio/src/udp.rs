//! A UDP endpoint as one task: a `DatagramChat` over a `tokio::net::UdpSocket`.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use asynchat_core::{Bytes, DatagramChat, DatagramProtocol};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

/// Receive errors tolerated in one poll (each pending ICMP error is reported once).
const MAX_RECV_ERRORS: u32 = 16;

/// Runs `protocol` on `socket` until the protocol closes the endpoint.
pub async fn serve_udp<P: DatagramProtocol>(socket: UdpSocket, protocol: P) {
    let mut chat = DatagramChat::new(protocol);
    let mut buf = vec![0u8; 64 * 1024];
    let mut sleep = Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
    poll_fn(|cx| {
        let mut errors = 0;
        let mut timers_fired = false;
        loop {
            if chat.is_closed() {
                return Poll::Ready(());
            }
            let now = Instant::now();
            let mut progress = false;
            while let Some(d) = chat.poll_transmit() {
                match socket.poll_send_to(cx, &d.payload, d.peer) {
                    // An error loses this datagram only, as UDP may.
                    Poll::Ready(_) => {
                        chat.handle_sent();
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            if chat.interest().readable {
                let mut read = ReadBuf::new(&mut buf);
                match socket.poll_recv_from(cx, &mut read) {
                    Poll::Ready(Ok(peer)) => {
                        chat.handle_datagram(now, peer, Bytes::copy_from_slice(read.filled()));
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => {
                        errors += 1;
                        if errors == MAX_RECV_ERRORS {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            if let Some(at) = chat.poll_timeout() {
                let at = tokio::time::Instant::from_std(at);
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                if Pin::new(&mut sleep).as_mut().poll(cx).is_ready() {
                    if timers_fired {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    chat.handle_timeout(Instant::now());
                    timers_fired = true;
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
}
