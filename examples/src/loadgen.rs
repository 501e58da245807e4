//! A line-echo load generator on mio: `connections` connections, each keeping `in_flight` lines of
//! `line_len` bytes outstanding (a new line is sent for every echoed one), for a fixed time.
//! One thread, so the server under test gets the other core of a 2-core machine.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// What to run.
#[derive(Debug, Clone)]
pub struct Load {
    /// The server.
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// Lines outstanding per connection.
    pub in_flight: usize,
    /// Bytes per line, newline included (at least 2).
    pub line_len: usize,
    /// Time before counting starts.
    pub warmup: Duration,
    /// Time counted.
    pub duration: Duration,
}

impl Load {
    /// The benchmark's standard load: 50 connections × 16 lines of 64 bytes.
    #[must_use]
    pub fn standard(addr: SocketAddr, duration: Duration) -> Self {
        Self {
            addr,
            connections: 50,
            in_flight: 16,
            line_len: 64,
            warmup: Duration::from_millis(500),
            duration,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Echoed lines counted.
    pub responses: u64,
    /// Echoed lines over the whole run, warm-up included: what the server did while the load
    /// ran, to divide its CPU time by.
    pub all_responses: u64,
    /// Time counted.
    pub elapsed: Duration,
}

impl Report {
    /// Echoed lines per second.
    #[must_use]
    pub fn per_second(&self) -> f64 {
        self.responses as f64 / self.elapsed.as_secs_f64()
    }
}

struct Conn {
    stream: TcpStream,
    /// Bytes owed to the server (lines to send).
    owed: usize,
    /// Bytes sent so far, to know where in the line pattern the next byte is.
    sent: usize,
    writable: bool,
}

/// Runs `load` and reports the echoed lines per second. Fails if the server closes a connection.
pub fn run(load: &Load) -> io::Result<Report> {
    let line_len = load.line_len.max(2);
    let mut pattern = vec![b'x'; line_len - 1];
    pattern.push(b'\n');
    let block: Vec<u8> = pattern
        .iter()
        .copied()
        .cycle()
        .take(line_len * 64)
        .collect();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns = Vec::with_capacity(load.connections);
    for i in 0..load.connections {
        let mut stream = TcpStream::connect(load.addr)?;
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream,
            owed: load.in_flight * line_len,
            sent: 0,
            writable: true,
        });
    }
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let counting_from = start + load.warmup;
    let end = counting_from + load.duration;
    let mut responses = 0u64;
    let mut all_responses = 0u64;
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        let now = Instant::now();
        for event in &events {
            let i = event.token().0;
            let conn = &mut conns[i];
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "server closed",
                        ))
                    }
                    Ok(n) => {
                        let lines = memchr::memchr_iter(b'\n', &buf[..n]).count();
                        if now >= counting_from {
                            responses += lines as u64;
                        }
                        all_responses += lines as u64;
                        conn.owed += lines * line_len;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Not connected yet: readiness will come again.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(e) => return Err(e),
                }
            }
            while conn.owed > 0 {
                let at = conn.sent % line_len;
                let n = conn.owed.min(block.len() - at);
                match conn.stream.write(&block[at..at + n]) {
                    Ok(k) => {
                        conn.sent += k;
                        conn.owed -= k;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let want = conn.owed > 0;
            if want != conn.writable {
                conn.writable = want;
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                poll.registry()
                    .reregister(&mut conn.stream, Token(i), interest)?;
            }
        }
    }
    Ok(Report {
        responses,
        all_responses,
        elapsed: end.saturating_duration_since(counting_from),
    })
}
