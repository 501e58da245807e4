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

/// Registers like a UDP socket, but refuses to be re-registered.
struct Fragile(UdpSocket);

impl Source for Fragile {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        self.0.register(r, t, i)
    }
    fn reregister(&mut self, _: &mio::Registry, _: mio::Token, _: mio::Interest) -> io::Result<()> {
        Err(io::Error::other("refused on purpose"))
    }
    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        self.0.deregister(r)
    }
}

/// Wants to write after its first datagram, which needs a re-registration that fails.
struct WantsWrite {
    socket: Fragile,
    got_one: bool,
    error: Arc<std::sync::Mutex<Option<String>>>,
    closed: Arc<AtomicBool>,
}

impl Dispatcher for WantsWrite {
    fn source(&mut self) -> &mut dyn Source {
        &mut self.socket
    }
    fn writable(&self) -> bool {
        self.got_one
    }
    fn handle_read(&mut self, _cx: &mut DispatchContext<'_>) {
        let mut buf = [0u8; 64];
        while self.socket.0.recv_from(&mut buf).is_ok() {
            self.got_one = true;
        }
    }
    fn handle_error(&mut self, cx: &mut DispatchContext<'_>, error: io::Error) {
        *self.error.lock().unwrap() = Some(error.to_string());
        cx.close();
    }
    fn handle_close(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_source_the_loop_cannot_poll_reaches_handle_error_then_closes() {
    let error = Arc::new(std::sync::Mutex::new(None));
    let closed = Arc::new(AtomicBool::new(false));
    let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let (e, c) = (error.clone(), closed.clone());
    let server = std::thread::spawn(move || {
        let mut ev = EventLoop::new().unwrap();
        ev.add_dispatcher(WantsWrite {
            socket: Fragile(socket),
            got_one: false,
            error: e,
            closed: c,
        })
        .unwrap();
        ev.run().unwrap();
    });
    StdUdp::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"x", addr)
        .unwrap();
    server.join().unwrap();
    assert_eq!(error.lock().unwrap().as_deref(), Some("refused on purpose"));
    assert!(closed.load(Ordering::SeqCst));
}
