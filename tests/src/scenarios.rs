//! The scenarios, each generic over the driver. Every one uses 127.0.0.1 and ephemeral ports (or
//! an unnamed Unix socket pair), is bounded in time (socket timeouts) and count, and stops its
//! server when it ends.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asynchat_core::{
    Bytes, CloseReason, Config, Context, DatagramContext, DatagramProtocol, Frame, Misuse,
    PeerError, Protocol, Terminator,
};

use crate::driver::Driver;
use crate::peer::{closed_within, connect, fnv1a, read_n, read_to_eof, write_bytewise, IO_TIMEOUT};
use crate::probe::{pattern, Probe, SharedLog};
use asynchat_core::backlog::PushError;
use asynchat_core::driver::{ConnHandle, PeerAddr, ServerHandle};

fn log() -> SharedLog {
    SharedLog::default()
}

fn probe_server<D: Driver>(
    terminator: &'static str,
    config: Config,
    log: &SharedLog,
) -> crate::Server {
    let log = log.clone();
    D::serve(config, move |_| Probe::new(terminator, &log))
}

/// `"hello\r"` then `"\nworld\r\n"`: the delimiter split across two writes.
pub fn delimiter_split_across_writes<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let mut c = connect(server.addr);
    c.write_all(b"hello\r").unwrap();
    std::thread::sleep(Duration::from_millis(30));
    c.write_all(b"\nworld\r\n").unwrap();
    assert_eq!(read_n(&mut c, 12), b"hello\nworld\n");
}

/// 2-byte and 4-byte delimiters arriving one byte per write.
pub fn delimiters_one_byte_per_write<D: Driver>() {
    for (delim, input, want) in [
        ("\r\n", &b"ab\r\ncd\r\n"[..], &b"ab\ncd\n"[..]),
        (
            "\r\n.\r\n",
            &b"x\r\n.y\r\n.\r\nz\r\n.\r\n"[..],
            &b"x\r\n.y\nz\n"[..],
        ),
    ] {
        let log = log();
        let server = probe_server::<D>(delim, Config::default(), &log);
        let mut c = connect(server.addr);
        write_bytewise(&mut c, input);
        assert_eq!(read_n(&mut c, want.len()), want, "delimiter {delim:?}");
    }
}

/// 10 000 frames pipelined in one write, answered in order.
pub fn ten_thousand_pipelined_frames<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let mut c = connect(server.addr);
    let request: String = (0..10_000).map(|i| format!("line {i}\r\n")).collect();
    let want: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
    let writer = {
        let mut c = c.try_clone().unwrap();
        std::thread::spawn(move || c.write_all(request.as_bytes()).unwrap())
    };
    assert_eq!(read_n(&mut c, want.len()), want.as_bytes());
    writer.join().unwrap();
    assert_eq!(log.lock().unwrap().frames, 10_000);
}

/// A `Count` terminator set in `found_terminator` counts across reads, then lines resume.
pub fn count_across_reads_and_switch<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let mut c = connect(server.addr);
    c.write_all(b"count 10\r\nabc").unwrap();
    std::thread::sleep(Duration::from_millis(30));
    c.write_all(b"defg").unwrap();
    std::thread::sleep(Duration::from_millis(30));
    c.write_all(b"hijnext\r\n").unwrap();
    assert_eq!(read_n(&mut c, 16), b"abcdefghij\nnext\n");
}

/// An `Eof` terminator: the rest of the stream is one frame, delivered at the peer's close.
pub fn eof_terminator<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let mut c = connect(server.addr);
    c.write_all(b"until-eof\r\nall of ").unwrap();
    std::thread::sleep(Duration::from_millis(30));
    c.write_all(b"the rest").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut c).unwrap(), b"all of the rest\n");
}

/// The peer's end of stream in the same segment as its last bytes, so in the same readiness
/// event (a driver that stops reading after a short read must still see the end: no later
/// event will come for it), on 50 connections.
pub fn end_of_stream_right_behind_the_data<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    for i in 0..50 {
        let mut c = connect(server.addr);
        // First an exchange, so that the server has drained the socket and waits for the
        // next readiness edge (the first read of a new connection does not).
        c.write_all(b"ping\r\n").unwrap();
        assert_eq!(read_n(&mut c, 5), b"ping\n");
        // Corked, the bytes wait for the FIN and leave with it (Linux).
        #[cfg(target_os = "linux")]
        socket2::SockRef::from(&c).set_tcp_cork(true).unwrap();
        c.write_all(format!("until-eof\r\npayload {i}").as_bytes())
            .unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            read_to_eof(&mut c).unwrap(),
            format!("payload {i}\n").as_bytes(),
            "connection {i}"
        );
    }
}

/// A 64 MiB push reaches the peer intact through partial writes. (The outbox limit counts a
/// buffer's overhead as well as its bytes: a push of exactly the default 64 MiB limit is over
/// it, so the limit is raised here.)
pub fn push_64_mib_intact<D: Driver>() {
    const N: usize = 64 << 20;
    let log = log();
    let config = Config::default().outbox_limit(N + (1 << 20));
    let server = probe_server::<D>("\r\n", config, &log);
    let mut c = connect(server.addr);
    c.write_all(format!("big {N}\r\n").as_bytes()).unwrap();
    let got = read_n(&mut c, N);
    assert_eq!(fnv1a(got), fnv1a((0..N).map(pattern)));
}

/// `close_when_done` with 8 MiB queued and a slow reader: every byte arrives, then EOF.
pub fn close_when_done_flushes_to_a_slow_reader<D: Driver>() {
    const N: usize = 8 << 20;
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let mut c = connect(server.addr);
    c.write_all(format!("bigq {N}\r\n").as_bytes()).unwrap();
    let mut got = Vec::with_capacity(N);
    let mut buf = vec![0; 256 << 10];
    loop {
        std::thread::sleep(Duration::from_millis(2));
        match c.read(&mut buf).unwrap() {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(got.len(), N);
    assert_eq!(fnv1a(got), fnv1a((0..N).map(pattern)));
    wait_for(|| log.lock().unwrap().closed.len() == 1);
    assert_eq!(log.lock().unwrap().closed[0], CloseReason::Done);
}

/// The peer half-closes right after its request; the whole reply still arrives, then EOF.
pub fn half_close_keeps_queued_output<D: Driver>() {
    const N: usize = 4 << 20;
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let mut c = connect(server.addr);
    c.write_all(format!("big {N}\r\n").as_bytes()).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let got = read_to_eof(&mut c).unwrap();
    assert_eq!(
        got.len(),
        N,
        "Python's asynchat would have dropped the reply here"
    );
    wait_for(|| log.lock().unwrap().closed.len() == 1);
    assert_eq!(log.lock().unwrap().closed[0], CloseReason::PeerClosed);
}

/// The peer sends a burst larger than a turn's budget and ends its side at once, while reading
/// the echoes slowly: the end of its stream arrives with more input than one turn reads, and
/// must still be seen (an edge-triggered loop is told of it once). Every byte comes back, then
/// EOF; five rounds, as the timing varies.
pub fn half_close_after_a_burst_still_ends_the_stream<D: Driver>() {
    const N: usize = 2 << 20;
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let line = format!("{}\r\n", "y".repeat(98));
    let burst = line.repeat(N / line.len());
    for round in 0..5 {
        let mut c = connect(server.addr);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reader = c.try_clone().unwrap();
        let slow = std::thread::spawn(move || {
            let (mut got, mut buf) = (0usize, vec![0; 64 << 10]);
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return Ok(got),
                    Ok(n) => got += n,
                    Err(e) => return Err(format!("after {got} bytes: {e}")),
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        c.write_all(burst.as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let got = slow.join().unwrap();
        let want = burst.len() / line.len() * (line.len() - 1);
        assert_eq!(
            got,
            Ok(want),
            "{}: round {round}: every echo, then the end of the stream",
            D::NAME
        );
    }
}

/// The peer resets in the middle of a large write: that connection closes with an I/O error and
/// the server carries on.
pub fn peer_reset_mid_write<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    {
        let mut c = connect(server.addr);
        c.write_all(b"big 33554432\r\n").unwrap();
        let _ = read_n(&mut c, 1 << 20);
        socket_linger_zero(&c);
        drop(c); // RST, with most of the reply unsent
    }
    wait_for(|| log.lock().unwrap().closed.len() == 1);
    assert!(
        matches!(log.lock().unwrap().closed[0], CloseReason::Io(_)),
        "{:?}",
        log.lock().unwrap().closed
    );
    let mut c = connect(server.addr);
    c.write_all(b"still here\r\n").unwrap();
    assert_eq!(read_n(&mut c, 11), b"still here\n");
}

/// A zero linger time makes `close()` reset the connection (RST) instead of ending it (FIN).
fn socket_linger_zero(s: &std::net::TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// Connecting to a port nobody listens on reaches the protocol as a typed I/O error.
pub fn connect_refused_is_a_typed_error<D: Driver>() {
    let addr = {
        let l = TcpListener::bind(crate::LOCALHOST).unwrap();
        l.local_addr().unwrap()
    };
    let log = log();
    let (handle, client) = D::run_client(addr, Probe::new("\r\n", &log));
    client.join().unwrap();
    assert_eq!(
        handle.push("late"),
        Err(PushError::Closed),
        "the client's handle knows it has gone"
    );
    let closed = &log.lock().unwrap().closed;
    assert_eq!(closed.len(), 1, "closed() ran once: {closed:?}");
    match &closed[0] {
        CloseReason::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

/// A frame over `max_frame` gets the typed error and closes only its connection, while 100
/// others carry on.
pub fn over_long_frame_closes_only_its_connection<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default().max_frame(1024), &log);
    let mut others: Vec<_> = (0..100).map(|_| connect(server.addr)).collect();
    for (i, c) in others.iter_mut().enumerate() {
        c.write_all(format!("before {i}\r\n").as_bytes()).unwrap();
    }
    let mut bad = connect(server.addr);
    bad.write_all(&[b'x'; 2000]).unwrap();
    assert!(
        closed_within(&mut bad, Duration::from_secs(10)),
        "the offender is closed"
    );
    for (i, c) in others.iter_mut().enumerate() {
        c.write_all(format!("after {i}\r\n").as_bytes()).unwrap();
        let want = format!("before {i}\nafter {i}\n");
        assert_eq!(read_n(c, want.len()), want.as_bytes());
    }
    let closed = &log.lock().unwrap().closed;
    assert_eq!(
        closed,
        &[CloseReason::Error(
            PeerError::FrameTooLong { limit: 1024 }.into()
        )]
    );
}

/// The idle timeout fires on time and closes only the idle connection.
pub fn idle_timeout_closes_only_the_idle_connection<D: Driver>() {
    let idle = Duration::from_millis(300);
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default().idle_timeout(Some(idle)), &log);
    let start = Instant::now();
    let mut quiet = connect(server.addr);
    let mut busy = connect(server.addr);
    let chatter = std::thread::spawn(move || {
        for i in 0..15 {
            std::thread::sleep(Duration::from_millis(100));
            busy.write_all(format!("{i:02}\r\n").as_bytes()).unwrap();
            assert_eq!(read_n(&mut busy, 3), format!("{i:02}\n").as_bytes());
        }
    });
    assert!(closed_within(&mut quiet, Duration::from_secs(5)));
    let elapsed = start.elapsed();
    assert!(
        // The upper bound leaves a loaded machine (tests on eight threads over two cores) a
        // second; a deadline the chatter kept moving would close it after 1.5 s and more.
        elapsed >= idle && elapsed < idle + Duration::from_secs(1),
        "idle connection closed after {elapsed:?}, timeout {idle:?}"
    );
    chatter.join().unwrap();
    // The busy client's socket is dropped with its thread, so it may close too, but not by timeout.
    let closed = &log.lock().unwrap().closed;
    assert_eq!(closed[0], CloseReason::TimedOut, "{closed:?}");
    assert_eq!(
        closed
            .iter()
            .filter(|r| **r == CloseReason::TimedOut)
            .count(),
        1
    );
}

/// A client that floods without reading makes the server stop reading (bounded memory), and
/// the server resumes when the client drains its replies.
pub fn flood_without_reading_is_bounded<D: Driver>() {
    let high = 64 << 10;
    let log = log();
    let config = Config::default().water_marks(high / 2, high);
    let server = probe_server::<D>("\r\n", config, &log);
    let mut c = connect(server.addr);
    c.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let line = [b'y'; 62];
    let mut chunk = Vec::new();
    for _ in 0..1024 {
        chunk.extend_from_slice(&line);
        chunk.extend_from_slice(b"\r\n");
    }
    let mut sent = 0usize;
    while sent < (256 << 20) {
        match c.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break, // the write timed out: the server stopped reading
        }
    }
    assert!(
        sent < (256 << 20),
        "the server kept reading a client that never reads"
    );
    let max_queued = log.lock().unwrap().max_queued;
    assert!(
        max_queued <= high + (64 << 10),
        "queued {max_queued} bytes with a high water mark of {high}"
    );
    // Now read everything: the server must resume and answer every line sent.
    let frames_sent = sent / 64;
    let mut reader = c.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut total = 0;
        let mut buf = vec![0; 1 << 20];
        while total < frames_sent * 63 {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    });
    let partial = sent % 64;
    if partial > 0 {
        c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&chunk[partial..64]).unwrap();
    }
    let received = drain.join().unwrap();
    assert!(
        received >= frames_sent * 63,
        "received {received}, want {}",
        frames_sent * 63
    );
}

/// A UDP echo of 1000 datagrams of 1 B to 60 KiB.
pub fn udp_echo_1000_datagrams<D: Driver>() {
    struct Echo;
    impl DatagramProtocol for Echo {
        fn handle_datagram(
            &mut self,
            ctx: &mut DatagramContext<'_>,
            peer: std::net::SocketAddr,
            data: Bytes,
        ) {
            ctx.send(peer, data);
        }
    }
    let server = D::serve_udp(Echo);
    let sock = UdpSocket::bind(crate::LOCALHOST).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0; 65536];
    for i in 0..1000usize {
        let size = 1 + (i * 7919) % (60 << 10);
        let payload: Vec<u8> = (0..size).map(|j| pattern(i + j)).collect();
        sock.send_to(&payload, server.addr).unwrap();
        let (n, from) = sock.recv_from(&mut buf).expect("echo within 5 s");
        assert_eq!(from, server.addr);
        assert_eq!(&buf[..n], &payload[..], "datagram {i} of {size} bytes");
    }
}

/// Pushes through the driver's handle from another thread reach the right connection, in order.
pub fn handle_pushes_from_another_thread<D: Driver>() {
    let log = log();
    let ids: Arc<Mutex<Vec<ConnHandle>>> = Arc::default();
    let server = {
        let (log, ids) = (log.clone(), ids.clone());
        D::serve(Config::default(), move |a| {
            ids.lock().unwrap().push(a.conn.clone());
            Probe::new("\r\n", &log)
        })
    };
    let mut first = connect(server.addr);
    wait_for(|| ids.lock().unwrap().len() == 1);
    let mut second = connect(server.addr);
    wait_for(|| ids.lock().unwrap().len() == 2);
    let target = ids.lock().unwrap()[1].clone();
    let pusher = std::thread::spawn(move || {
        for i in 0..1000 {
            target
                .push(format!("msg {i}\n"))
                .expect("the connection is open and reading");
        }
    });
    let want: String = (0..1000).map(|i| format!("msg {i}\n")).collect();
    assert_eq!(read_n(&mut second, want.len()), want.as_bytes());
    pusher.join().unwrap();
    first
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        first.read(&mut buf).is_err(),
        "the other connection got nothing"
    );
}

/// Through the connection handle alone: a producer pushed from another thread is written in
/// full, `close_when_done` then ends the stream after it, a full backlog refuses a push with a
/// typed error, and the handle of a closed connection reports it.
pub fn handle_pushes_a_producer_then_closes_when_done<D: Driver>() {
    let log = log();
    let conns: Arc<Mutex<Vec<ConnHandle>>> = Arc::default();
    let server = {
        let (log, conns) = (log.clone(), conns.clone());
        D::serve(Config::default(), move |a| {
            conns.lock().unwrap().push(a.conn.clone());
            Probe::new("\r\n", &log)
        })
    };
    let mut client = connect(server.addr);
    wait_for(|| conns.lock().unwrap().len() == 1);
    let conn = conns.lock().unwrap()[0].clone();
    let body: Vec<u8> = (0..3 << 20).map(pattern).collect();
    let producer = asynchat_core::producer::SimpleProducer::new(body.clone(), 64 << 10);
    conn.push_producer(producer)
        .expect("an open connection takes a producer");
    conn.close_when_done()
        .expect("an open connection takes a close");
    let got = read_to_eof(&mut client).expect("read to the end");
    assert_eq!(
        got.len(),
        body.len(),
        "every byte of the producer, then the end"
    );
    assert!(got == body, "in order");
    // The connection is gone, and its handle says so on every driver.
    wait_for(|| conn.push("late\n") == Err(PushError::Closed));
    assert_eq!(conn.close(), Err(PushError::Closed));
}

/// A zero-length counted body is an empty frame at once, and a 1 MiB counted body passes
/// under the default config (its line limit is 64 KiB; counts have their own bound).
pub fn zero_and_large_counted_bodies<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let mut c = connect(server.addr);
    c.write_all(b"count 0\r\nafter\r\n").unwrap();
    assert_eq!(
        read_n(&mut c, 7),
        b"\nafter\n",
        "the empty body, then the next line"
    );
    let body: Vec<u8> = (0..1 << 20).map(pattern).collect();
    c.write_all(b"count 1048576\r\n").unwrap();
    c.write_all(&body).unwrap();
    let echoed = read_n(&mut c, body.len() + 1);
    assert!(echoed[..body.len()] == body[..], "the body, intact");
    assert_eq!(echoed[body.len()], b'\n');
}

/// Replies a client receives, one per line: what its test reads from ordinary code.
struct Replies(std::sync::mpsc::Sender<Bytes>);

impl Protocol for Replies {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }
    fn found_terminator(&mut self, _: &mut Context<'_>, line: Frame<'_>) {
        let _ = self.0.send(line.into_bytes());
    }
}

/// A client driven from outside its protocol: requests pushed through its handle from the
/// test's thread, each reply read back before the next request, then a graceful close.
pub fn a_client_pushed_from_outside_its_protocol<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let (tx, replies) = std::sync::mpsc::channel();
    let (client, thread) = D::run_client(server.addr, Replies(tx));
    for i in 0..100 {
        client
            .push(format!("request {i}\r\n"))
            .expect("the client is open");
        let reply = replies.recv_timeout(IO_TIMEOUT).expect("a reply");
        assert_eq!(reply, format!("request {i}"));
    }
    client.close_when_done().expect("the client is open");
    thread.join().expect("the client's thread");
    wait_for(|| log.lock().unwrap().closed.len() == 1);
    assert_eq!(log.lock().unwrap().closed[0], CloseReason::PeerClosed);
}

/// The request/response helper over a client of each driver: a blocking request from the
/// test's thread gets its reply, pipelined requests get theirs in order, and a closed
/// connection is reported, not waited for.
pub fn requests_and_replies_through_the_helper<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let (protocol, replies) = asynchat_core::driver::reply::replies("\n");
    let (conn, thread) = D::run_client(server.addr, protocol);
    let requester = asynchat_core::driver::reply::Requester::new(conn, replies);
    for i in 0..50 {
        let reply = requester
            .request_blocking(format!("ask {i}\r\n"), IO_TIMEOUT)
            .expect("a reply");
        assert_eq!(reply, format!("ask {i}"));
    }
    for i in 0..10 {
        requester.conn().push(format!("pipelined {i}\r\n")).unwrap();
    }
    for i in 0..10 {
        let reply = requester
            .replies()
            .next_blocking(IO_TIMEOUT)
            .expect("in order");
        assert_eq!(reply, format!("pipelined {i}"));
    }
    requester.conn().push("bye\r\n").unwrap();
    assert_eq!(
        requester.replies().next_blocking(IO_TIMEOUT).unwrap(),
        "bye"
    );
    assert!(matches!(
        requester.request_blocking("too late\r\n", IO_TIMEOUT),
        Err(asynchat_core::driver::reply::RequestError::Closed(_)
            | asynchat_core::driver::reply::RequestError::Push(PushError::Closed))
    ));
    thread.join().expect("the client's thread");
}

/// A protocol stops its own server through the handle it was given: the listener closes,
/// the open connection finishes its reply, and the server ends by itself.
pub fn a_protocol_stops_its_own_server<D: Driver>() {
    struct Stopper(ServerHandle);
    impl Protocol for Stopper {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
            if &line[..] == b"stop" {
                self.0.shutdown(Duration::from_secs(5));
                ctx.push("stopping\n");
            }
        }
    }
    let server = D::serve(Config::default(), |a| Stopper(a.server.clone()));
    let addr = server.addr;
    let mut c = connect(addr);
    c.write_all(b"stop\n").unwrap();
    assert_eq!(read_n(&mut c, 9), b"stopping\n");
    assert!(
        closed_within(&mut c, Duration::from_secs(5)),
        "closed after its reply"
    );
    let start = Instant::now();
    server.join();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the server ended by itself"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing accepts any more"
    );
}

/// Shutdown with a deadline against a client that never reads: over by the deadline (with a
/// loaded machine's slack, well short of a linger), while a client that reads gets everything
/// it was sent.
pub fn shutdown_with_a_deadline_against_a_client_that_never_reads<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let mut stuck = connect(server.addr);
    stuck.write_all(b"big 16000000\r\n").unwrap();
    let mut reader = connect(server.addr);
    reader.write_all(b"big 100000\r\n").unwrap();
    wait_for(|| log.lock().unwrap().frames == 2);
    let handle = server.handle().clone();
    let deadline = Duration::from_millis(300);
    let start = Instant::now();
    handle.shutdown(deadline);
    let got = read_to_eof(&mut reader).expect("the reader's reply, then the end");
    assert_eq!(got.len(), 100_000, "everything that could be written was");
    // The reader keeps its side open: the server's lingering read of it ends at the deadline
    // too, not when the linger would.
    server.join();
    let took = start.elapsed();
    // Half the linger of slack: a loaded machine may be late by a few hundred milliseconds, a
    // linger that outlived the deadline would be late by the whole of it.
    let slack = asynchat_core::driver::LINGER / 2;
    assert!(
        took < deadline + slack,
        "shut down in {took:?} with a deadline of {deadline:?}"
    );
    let stats = handle.stats();
    assert_eq!(stats.active, 0);
    assert_eq!(
        stats.closed.aborted, 1,
        "the one that never read: {stats:?}"
    );
    drop((stuck, reader));
}

/// A second shutdown with a shorter deadline, while the first is winding down, brings the end
/// forward: the wind-down's timer is re-armed, not left at the first deadline.
pub fn a_second_shutdown_brings_the_deadline_forward<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let mut stuck = connect(server.addr);
    stuck.write_all(b"big 16000000\r\n").unwrap();
    wait_for(|| log.lock().unwrap().frames == 1);
    let handle = server.handle().clone();
    let start = Instant::now();
    handle.shutdown(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200));
    let deadline = Duration::from_millis(300);
    handle.shutdown(deadline);
    // A later, longer deadline changes nothing.
    handle.shutdown(Duration::from_secs(30));
    server.join();
    let took = start.elapsed();
    // Left at the first deadline, it would take a minute; the slack is for a loaded machine.
    let slack = asynchat_core::driver::LINGER / 2;
    assert!(
        took < Duration::from_millis(200) + deadline + slack,
        "shut down in {took:?}, the second deadline being {deadline:?}"
    );
    assert_eq!(handle.stats().closed.aborted, 1, "{:?}", handle.stats());
    drop(stuck);
}

/// `stop_accepting` closes the listener only: an open connection goes on being served, and
/// the server ends by itself when that connection does.
pub fn stop_accepting_keeps_the_open_connections<D: Driver>() {
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let addr = server.addr;
    let mut open = connect(addr);
    open.write_all(b"before\r\n").unwrap();
    assert_eq!(read_n(&mut open, 7), b"before\n");
    server.handle().stop_accepting();
    wait_for(|| std::net::TcpStream::connect(addr).is_err());
    open.write_all(b"after\r\n").unwrap();
    assert_eq!(read_n(&mut open, 6), b"after\n", "still served");
    drop(open);
    let start = Instant::now();
    server.join();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "ended with its last connection"
    );
    // Probe connects made before the listener closed were accepted too: each ended as its
    // peer closed, as did the open connection.
    let closed = log.lock().unwrap().closed.clone();
    assert!(
        !closed.is_empty() && closed.iter().all(|r| *r == CloseReason::PeerClosed),
        "{closed:?}"
    );
}

/// A handle given to a factory whose protocol was refused stays that refused connection's: it
/// never reaches the next connection, whichever slot that takes.
pub fn a_refused_connections_handle_never_reaches_the_next_one<D: Driver>() {
    let log = log();
    let handles: Arc<Mutex<Vec<ConnHandle>>> = Arc::default();
    let server = {
        let (log, handles) = (log.clone(), handles.clone());
        D::serve(Config::default(), move |a| {
            let mut handles = handles.lock().unwrap();
            handles.push(a.conn.clone());
            // The first protocol cannot start (an empty delimiter); the next ones can.
            let first: Terminator = if handles.len() == 1 {
                Terminator::Delimiter(Bytes::new())
            } else {
                "\r\n".into()
            };
            Probe::new(first, &log)
        })
    };
    let mut refused = connect(server.addr);
    assert!(
        closed_within(&mut refused, Duration::from_secs(5)),
        "refused"
    );
    let mut next = connect(server.addr);
    next.write_all(b"hello\r\n").unwrap();
    assert_eq!(read_n(&mut next, 6), b"hello\n");
    let stale = handles.lock().unwrap()[0].clone();
    assert_eq!(stale.push("stray\r\n"), Err(PushError::Closed));
    assert_ne!(stale.id(), handles.lock().unwrap()[1].id());
    next.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(next.read(&mut buf).is_err(), "nothing stray arrived");
}

/// What a server refuses or loses is counted: a factory whose protocol cannot start, an
/// over-long frame.
pub fn refused_and_failed_connections_are_counted<D: Driver>() {
    /// A protocol that cannot start; it reports how it heard of its end.
    struct Invalid(Arc<Mutex<Vec<CloseReason>>>);
    impl Protocol for Invalid {
        fn first_terminator(&self) -> Terminator {
            Terminator::Delimiter(Bytes::new())
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
        fn closed(&mut self, reason: &CloseReason) {
            self.0.lock().unwrap().push(reason.clone());
        }
    }
    let heard: Arc<Mutex<Vec<CloseReason>>> = Arc::default();
    let told = heard.clone();
    let server = D::serve(Config::default(), move |_| Invalid(told.clone()));
    let mut refused = connect(server.addr);
    assert!(
        closed_within(&mut refused, Duration::from_secs(5)),
        "dropped"
    );
    wait_for(|| server.handle().stats().refused == 1);
    assert_eq!(server.handle().stats().accepted, 1);
    assert_eq!(
        *heard.lock().unwrap(),
        [CloseReason::Error(Misuse::EmptyDelimiter.into())],
        "the refused protocol hears why, once"
    );

    let log = log();
    let server = probe_server::<D>("\r\n", Config::default().max_frame(16), &log);
    let mut long = connect(server.addr);
    long.write_all(&[b'x'; 100]).unwrap();
    assert!(closed_within(&mut long, Duration::from_secs(5)), "closed");
    wait_for(|| server.handle().stats().closed.peer_errors == 1);
    let stats = server.handle().stats();
    assert_eq!((stats.accepted, stats.active), (1, 0), "{stats:?}");
}

/// A server on a Unix-domain socket: the same protocol, its peer named as a Unix peer, its
/// connections counted, its shutdown as over TCP.
pub fn serve_over_a_unix_socket<D: Driver>() {
    let dir = std::env::temp_dir().join(format!(
        "asynchat-{}-{}",
        std::process::id(),
        D::NAME.replace([' ', '(', ')'], "")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.sock");
    let log = log();
    let peers: Arc<Mutex<Vec<PeerAddr>>> = Arc::default();
    let server = {
        let (log, peers) = (log.clone(), peers.clone());
        D::serve_unix(path.clone(), Config::default(), move |a| {
            peers.lock().unwrap().push(a.peer.clone());
            Probe::new("\r\n", &log)
        })
    };
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(b"over unix\r\n").unwrap();
    let mut reply = [0; 10];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"over unix\n");
    assert!(matches!(peers.lock().unwrap()[0], PeerAddr::Unix(_)));
    drop(c);
    wait_for(|| server.handle().stats().closed.total() == 1);
    // A graceful close from the server's side ends the stream at once (the write side is
    // shut down), not when the lingering read gives up.
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(b"bye\r\n").unwrap();
    let start = Instant::now();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"bye\n");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the end came with the reply"
    );
    drop(c);
    wait_for(|| server.handle().stats().closed.total() == 2);
    server.handle().shutdown(Duration::from_secs(1));
    server.join();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A protocol that pushes on `connected` (a greeting) works on accepted connections.
pub fn greeting_on_connect<D: Driver>() {
    struct Greeter;
    impl Protocol for Greeter {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn connected(&mut self, ctx: &mut Context<'_>) {
            ctx.push("220 hello\n");
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, _: Frame<'_>) {
            ctx.push("221 bye\n");
            ctx.close_when_done();
        }
    }
    let server = D::serve(Config::default(), |_| Greeter);
    let mut c = connect(server.addr);
    assert_eq!(read_n(&mut c, 10), b"220 hello\n");
    c.write_all(b"QUIT\n").unwrap();
    assert_eq!(read_to_eof(&mut c).unwrap(), b"221 bye\n");
}

/// The peer keeps sending after its last request: the server's graceful close must not turn
/// into a reset (which unread input causes) that destroys the reply in flight.
pub fn graceful_close_with_unread_input_still_delivers_the_reply<D: Driver>() {
    const N: usize = 1 << 20;
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    for _ in 0..5 {
        let mut c = connect(server.addr);
        c.set_nodelay(true).unwrap();
        let mut request = format!("bigq {N}\r\n").into_bytes();
        request.extend_from_slice(&vec![b'j'; 256 << 10]); // never read by the server
        c.write_all(&request).unwrap();
        // Read slowly at first, so the close happens while most of the reply is still queued.
        std::thread::sleep(Duration::from_millis(50));
        let got = read_to_eof(&mut c).expect("the reply ends with EOF, not a reset");
        assert_eq!(got.len(), N);
        assert_eq!(fnv1a(got), fnv1a((0..N).map(pattern)));
    }
}

/// The same protocol over a Unix stream socket, a stream that is not TCP (`run` on tokio and
/// smol): frames echoed, a deadline fired, a reply of several times the socket's buffer flushed
/// whole by `close_when_done`, and the connection over soon after the peer closes its side (the
/// lingering read that guards a graceful close ends at the peer's close, not at its limit).
pub fn unix_socket_runs_the_same_protocol<D: Driver>() {
    const N: usize = 4 << 20;
    let log = log();
    let (mut c, theirs) = UnixStream::pair().expect("socket pair");
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let task = D::run_over_unix(theirs, Probe::new("\r\n", &log), Config::default());
    let read = |n: usize| {
        let mut buf = vec![0; n];
        (&c).read_exact(&mut buf).expect("read the expected bytes");
        buf
    };
    // Timed from before the write: the server may read the request (and its clock) before this
    // thread gets to read its own. A little slack for a server whose turn read the clock just
    // before the request arrived.
    let asked = Instant::now();
    (&c).write_all(b"one\r\nlater 50\r\n").unwrap();
    assert_eq!(read(4), b"one\n");
    assert_eq!(read(5), b"tick\n");
    assert!(
        asked.elapsed() >= Duration::from_millis(45),
        "the deadline fired early"
    );
    (&c).write_all(format!("bigq {N}\r\n").as_bytes()).unwrap();
    assert_eq!(fnv1a(read(N)), fnv1a((0..N).map(pattern)));
    wait_for(|| log.lock().unwrap().closed.len() == 1);
    assert_eq!(log.lock().unwrap().closed[0], CloseReason::Done);

    c.shutdown(Shutdown::Write).unwrap();
    let closing = Instant::now();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).expect("the end of the stream");
    assert!(rest.is_empty(), "{} bytes after the reply", rest.len());
    task.join().expect("the driver's thread");
    assert!(
        closing.elapsed() < Duration::from_secs(1),
        "the connection outlived the peer's close by {:?}",
        closing.elapsed()
    );
}

/// Polls `done` every few milliseconds, for at most 10 s.
fn wait_for(mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Peers that pipeline without pause (each with one thread writing lines back to back and
/// another reading the echoes, so backpressure never holds them for long) cannot hold the
/// driver: a fresh client's round trip on the same server stays under 50 ms (the median of 7;
/// each under 1 s), and the pipelining peers are still served meanwhile. A driver that goes on
/// reading and writing while the socket has more never gets to the fresh client: each write
/// the peer reads lets it send more.
pub fn a_greedy_pipeliner_does_not_starve_a_fresh_client<D: Driver>() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let log = log();
    let server = probe_server::<D>("\r\n", Config::default(), &log);
    let stop = Arc::new(AtomicBool::new(false));
    let replied = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    let mut greedy = Vec::new();
    for _ in 0..2 {
        let c = connect(server.addr);
        let (mut w, stop_w) = (c.try_clone().unwrap(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let chunk = b"PING 0123456789abcdef0123456789abcdef0123456789\r\n".repeat(1_000);
            while !stop_w.load(Ordering::Relaxed) {
                if w.write_all(&chunk).is_err() {
                    break;
                }
            }
        }));
        let (mut r, stop_r, replied) = (c.try_clone().unwrap(), stop.clone(), replied.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0; 1 << 16];
            while !stop_r.load(Ordering::Relaxed) {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        replied.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
        }));
        greedy.push(c);
    }
    // The flood is on once replies stream back.
    wait_for(|| replied.load(Ordering::Relaxed) > 4 << 20);
    let before = replied.load(Ordering::Relaxed);
    let mut round_trips = Vec::new();
    for i in 0..7 {
        let start = Instant::now();
        let mut fresh = connect(server.addr);
        // A starved client fails in seconds, not at the suite's I/O timeout.
        fresh
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        fresh.write_all(format!("hi {i}\r\n").as_bytes()).unwrap();
        assert_eq!(read_n(&mut fresh, 5), format!("hi {i}\n").as_bytes());
        round_trips.push(start.elapsed());
    }
    let during = replied.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for c in &greedy {
        let _ = c.shutdown(Shutdown::Both);
    }
    for t in threads {
        t.join().unwrap();
    }
    round_trips.sort();
    let median = round_trips[round_trips.len() / 2];
    let worst = round_trips[round_trips.len() - 1];
    assert!(
        median < Duration::from_millis(50) && worst < Duration::from_secs(1),
        "{}: fresh clients waited {round_trips:?} next to pipelining peers",
        D::NAME
    );
    assert!(during > 0, "the pipelining peers were starved in turn");
}
