//! Fault storms: many hostile or broken peers at once, on one server, while well-behaved
//! clients keep talking to it. After each storm a fresh client must be served correctly, the
//! bystanders must have seen no error, and the process's file descriptors and memory must come
//! back to where they were.
//!
//! The storms count the descriptors and memory of the whole process (the server runs on a
//! thread of the test), so [`run_all`] must run alone in its test binary (`tests/storms.rs`).
//! Descriptor exhaustion is left to `driver-mio/tests/emfile.rs`, which lowers the process's
//! limit: in a shared process it would starve the bystanders' own sockets.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use asynchat_core::{CloseReason, Config, Error, PeerError};

use crate::driver::Driver;
use crate::peer::{closed_within, connect, read_n};
use crate::probe::{Probe, SharedLog};

/// The limits the storms run against: a short frame timeout (slow loris), a 64 KiB frame limit.
fn storm_config() -> Config {
    Config::default()
        .max_frame(64 << 10)
        .frame_timeout(Some(Duration::from_millis(500)))
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Clients that keep echoing lines on their own connections for the whole run; each checks
/// every reply, and counts its round trips.
struct Bystanders {
    stop: Arc<AtomicBool>,
    round_trips: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Result<(), String>>>,
}

impl Bystanders {
    fn start(addr: SocketAddr, n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let round_trips = Arc::new(AtomicUsize::new(0));
        let threads = (0..n)
            .map(|who| {
                let (stop, round_trips) = (stop.clone(), round_trips.clone());
                std::thread::spawn(move || {
                    let mut c = connect(addr);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let line = format!("bystander {who} line {i}");
                        c.write_all(format!("{line}\r\n").as_bytes())
                            .map_err(|e| format!("bystander {who} write {i}: {e}"))?;
                        let mut got = vec![0; line.len() + 1];
                        c.read_exact(&mut got)
                            .map_err(|e| format!("bystander {who} read {i}: {e}"))?;
                        if got != format!("{line}\n").as_bytes() {
                            return Err(format!("bystander {who} got {got:?} for line {i}"));
                        }
                        round_trips.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(())
                })
            })
            .collect();
        Self {
            stop,
            round_trips,
            threads,
        }
    }

    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join()
                .expect("a bystander panicked")
                .unwrap_or_else(|e| panic!("a bystander saw an error: {e}"));
        }
        self.round_trips.load(Ordering::Relaxed)
    }
}

/// Sets SO_LINGER to zero, so that dropping the socket resets the connection.
fn reset_on_drop(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// Each storm: its name, and what it does to the server at `addr`.
type Storm = (&'static str, fn(SocketAddr));

const STORMS: [Storm; 7] = [
    ("resets mid-request", resets_mid_request),
    ("resets mid-response", resets_mid_response),
    ("half-close", half_close),
    ("slow loris", slow_loris),
    ("flood without reading", flood_without_reading),
    ("over-long lines", over_long_lines),
    ("connect and vanish", connect_and_vanish),
];

/// 200 peers send half a line and reset.
fn resets_mid_request(addr: SocketAddr) {
    for _ in 0..200 {
        let mut c = connect(addr);
        c.write_all(b"half a li").unwrap();
        reset_on_drop(&c);
    }
}

/// 50 peers ask for 1 MiB and reset after reading a little of it.
fn resets_mid_response(addr: SocketAddr) {
    for _ in 0..50 {
        let mut c = connect(addr);
        c.write_all(b"big 1048576\r\n").unwrap();
        let _ = read_n(&mut c, 1000);
        reset_on_drop(&c);
    }
}

/// 100 peers send a line and end their side: each gets its echo, then the end of the stream.
fn half_close(addr: SocketAddr) {
    for i in 0..100 {
        let mut c = connect(addr);
        c.write_all(format!("half {i}\r\n").as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).expect("the echo, then EOF");
        assert_eq!(got, format!("half {i}\n").as_bytes());
    }
}

/// 50 peers trickle a line a byte every 100 ms: each is closed at the frame timeout (500 ms).
fn slow_loris(addr: SocketAddr) {
    let mut peers: Vec<TcpStream> = (0..50).map(|_| connect(addr)).collect();
    let start = Instant::now();
    let mut open = peers.len();
    while open > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{open} slow peers still open after 5 s"
        );
        open = 0;
        for p in &mut peers {
            if p.write_all(b"x").is_ok() {
                open += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for mut p in peers {
        assert!(closed_within(&mut p, Duration::from_secs(2)), "closed");
    }
}

/// 10 peers write lines without reading their echoes: the server stops reading them once
/// their output is above the high water mark, and each write eventually blocks.
fn flood_without_reading(addr: SocketAddr) {
    let chunk = b"flood flood flood flood flood flood flood flood flood flood\r\n".repeat(1000);
    let peers: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
    for mut p in &peers {
        p.set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut sent = 0usize;
        while sent < 256 << 20 {
            match p.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                // The server may close a flooder whose last line it has waited for longer than
                // the frame timeout: a writer blocked by backpressure stops mid-line, and on a
                // loaded machine it can stay silent that long once the server reads again.
                Err(e)
                    if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    break
                }
                Err(e) => panic!("flood write: {e}"),
            }
        }
        assert!(
            sent < 256 << 20,
            "the server kept reading a peer that never reads"
        );
    }
    for p in &peers {
        reset_on_drop(p);
    }
}

/// 20 peers send 100 KiB without a terminator: each is closed (frame too long).
fn over_long_lines(addr: SocketAddr) {
    let line = vec![b'l'; 100 << 10];
    for _ in 0..20 {
        let mut c = connect(addr);
        // The server may close before all of it is written: a reset is fine.
        let _ = c.write_all(&line);
        assert!(closed_within(&mut c, Duration::from_secs(5)), "closed");
    }
}

/// 500 peers connect and close at once.
fn connect_and_vanish(addr: SocketAddr) {
    for _ in 0..500 {
        drop(TcpStream::connect(addr).expect("connect"));
    }
}

/// Waits up to `within` for `done`.
fn settles(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Every storm in turn on one server of driver `D`.
pub fn run_all<D: Driver>() {
    let log = SharedLog::default();
    let server = {
        let log = log.clone();
        D::serve(storm_config(), move |_| Probe::new("\r\n", &log))
    };
    let bystanders = Bystanders::start(server.addr, 4);
    // Let the bystanders connect before the baseline is taken.
    assert!(settles(Duration::from_secs(5), || bystanders
        .round_trips
        .load(Ordering::Relaxed)
        >= 8));
    let (fds, memory) = (open_fds(), rss());
    for (name, storm) in STORMS {
        let closed_before = log.lock().unwrap().closed.len();
        storm(server.addr);
        // A fresh client is served correctly.
        let mut fresh = connect(server.addr);
        fresh.write_all(b"after the storm\r\n").unwrap();
        assert_eq!(
            read_n(&mut fresh, 16),
            b"after the storm\n",
            "{}: {name}",
            D::NAME
        );
        drop(fresh);
        // Every storm connection is closed and gone (a graceful close lingers up to 2 s).
        assert!(
            settles(Duration::from_secs(8), || open_fds() <= fds),
            "{}: {name}: {} descriptors open, {fds} before",
            D::NAME,
            open_fds()
        );
        let grown = rss().saturating_sub(memory);
        assert!(
            grown < 32 << 20,
            "{}: {name}: memory grew by {} MiB",
            D::NAME,
            grown >> 20
        );
        let closed = log.lock().unwrap().closed[closed_before..].to_vec();
        check_reasons(D::NAME, name, &closed);
    }
    let round_trips = bystanders.finish();
    assert!(
        round_trips > 50,
        "{}: bystanders were served ({round_trips})",
        D::NAME
    );
}

/// The close reasons a storm must produce: the storm's own kind of failure, never another.
fn check_reasons(driver: &str, storm: &str, closed: &[CloseReason]) {
    let expected = |r: &CloseReason| match storm {
        "slow loris" => matches!(r, CloseReason::FrameTimedOut),
        "over-long lines" => matches!(
            r,
            CloseReason::Error(Error::Peer(PeerError::FrameTooLong { .. }))
        ),
        "half-close" => matches!(r, CloseReason::PeerClosed),
        // A flooder stopped by backpressure leaves a line unfinished; if it stays silent past
        // the frame timeout once reading resumes, that is the frame timeout's to close.
        "flood without reading" => matches!(
            r,
            CloseReason::Io(_)
                | CloseReason::PeerClosed
                | CloseReason::Done
                | CloseReason::FrameTimedOut
        ),
        // Resets surface as I/O errors, or as an orderly end if the reset came before any
        // data; the fresh client ends with its own orderly close.
        _ => matches!(
            r,
            CloseReason::Io(_) | CloseReason::PeerClosed | CloseReason::Done
        ),
    };
    let fresh_client = |r: &CloseReason| matches!(r, CloseReason::PeerClosed | CloseReason::Io(_));
    let unexpected: Vec<&CloseReason> = closed
        .iter()
        .filter(|r| !expected(r) && !fresh_client(r))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{driver}: {storm}: unexpected close reasons {unexpected:?}"
    );
    let at_least = match storm {
        "slow loris" => 50,
        "over-long lines" => 20,
        "half-close" => 100,
        _ => 0,
    };
    let seen = closed.iter().filter(|r| expected(r)).count();
    assert!(
        seen >= at_least,
        "{driver}: {storm}: {seen} connections closed for the storm's reason, want {at_least}"
    );
}
