//! A UDP endpoint as one task: a `DatagramChat` over `Async<UdpSocket>`.

use std::future::poll_fn;
use std::io;
use std::net::UdpSocket;
use std::task::Poll;
use std::time::Instant;

use asynchat_core::driver::PollTimer;
use asynchat_core::{Bytes, DatagramChat, DatagramProtocol};
use smol::Async;

use crate::conn::Deadline;

/// Receive errors tolerated in one poll (each pending ICMP error is reported once).
const MAX_RECV_ERRORS: u32 = 16;

/// Runs `protocol` on `socket` until the protocol closes the endpoint.
pub async fn serve_udp<P: DatagramProtocol>(socket: Async<UdpSocket>, protocol: P) {
    let mut chat = DatagramChat::new(protocol);
    let mut buf = vec![0u8; 64 * 1024];
    let mut deadline = Deadline::new();
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
                match socket.get_ref().send_to(&d.payload, d.peer) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if socket.poll_writable(cx).is_pending() {
                            break;
                        }
                    }
                    // Sent, or failed for good: this datagram is done either way, as UDP allows.
                    _ => {
                        chat.handle_sent();
                        progress = true;
                    }
                }
            }
            if chat.interest().readable {
                match socket.get_ref().recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        chat.handle_datagram(now, peer, Bytes::copy_from_slice(&buf[..n]));
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if socket.poll_readable(cx).is_ready() {
                            progress = true;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        if errors == MAX_RECV_ERRORS {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        progress = true;
                    }
                }
            }
            if let Some(at) = chat.poll_timeout() {
                if deadline.poll_until(cx, at).is_ready() {
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
