//! asyncore's raw `dispatcher`: readiness callbacks on any mio source.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asynchat_mio::{DispatchContext, Dispatcher, EventLoop};
use mio::event::Source;
use mio::net::UdpSocket;

/// Answers "pong N" to every datagram; writable only while replies are queued; closes itself
/// 300 ms after the first datagram.
struct Ponger {
    socket: UdpSocket,
    replies: VecDeque<(SocketAddr, Vec<u8>)>,
    count: usize,
    closed: Arc<AtomicBool>,
}

impl Dispatcher for Ponger {
    fn source(&mut self) -> &mut dyn Source {
        &mut self.socket
    }

    fn writable(&self) -> bool {
        !self.replies.is_empty()
    }

    fn handle_read(&mut self, cx: &mut DispatchContext<'_>) {
        let mut buf = [0u8; 1500];
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((_, peer)) => {
                    self.count += 1;
                    self.replies
                        .push_back((peer, format!("pong {}", self.count).into_bytes()));
                    if self.count == 1 {
                        cx.set_deadline(Some(cx.now() + Duration::from_millis(300)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return cx.close(),
            }
        }
    }

    fn handle_write(&mut self, _cx: &mut DispatchContext<'_>) {
        while let Some((peer, reply)) = self.replies.front() {
            match self.socket.send_to(reply, *peer) {
                Ok(_) => {
                    self.replies.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.replies.pop_front();
                }
            }
        }
    }

    fn handle_timeout(&mut self, cx: &mut DispatchContext<'_>) {
        cx.close();
    }

    fn handle_close(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_raw_dispatcher_reads_writes_times_out_and_closes() {
    let closed = Arc::new(AtomicBool::new(false));
    let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let flag = closed.clone();
    let server = std::thread::spawn(move || {
        let mut ev = EventLoop::new().unwrap();
        ev.add_dispatcher(Ponger {
            socket,
            replies: VecDeque::new(),
            count: 0,
            closed: flag,
        })
        .unwrap();
        let start = Instant::now();
        ev.run().unwrap(); // returns once the dispatcher closed itself
        start.elapsed()
    });
    let client = StdUdp::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    for i in 1..=5 {
        client.send_to(b"ping", addr).unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("pong {i}").as_bytes());
    }
    let ran = server.join().unwrap();
    assert!(closed.load(Ordering::SeqCst), "handle_close ran");
    assert!(
        ran >= Duration::from_millis(300) && ran < Duration::from_secs(3),
        "{ran:?}"
    );
}
