//! A line-echo load generator on mio: `connections` connections, each keeping `in_flight` lines of
//! `line_len` bytes outstanding (a new line is sent for every echoed one), for a fixed time.
//! One thread, so the server under test gets the other core of a 2-core machine. In plaintext
//! or over TLS (rustls, the same provider as the servers).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use asynchat_core::tls::rustls::pki_types::ServerName;

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
    /// Over TLS, trusting this configuration (the server is named `localhost`).
    pub tls: Option<Arc<asynchat_core::tls::rustls::ClientConfig>>,
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
            tls: None,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Echoed lines counted.
    pub responses: u64,
    /// Echoed lines over the whole run, warm-up included: what the server did while the load
    /// ran, to divide its CPU time by.
    pub all_responses: u64,
    /// Time counted.
    pub elapsed: Duration,
    /// Over TLS: the protocol version and cipher suite agreed on.
    pub cipher_suite: Option<String>,
}

impl Report {
    /// Echoed lines per second.
    #[must_use]
    pub fn per_second(&self) -> f64 {
        self.responses as f64 / self.elapsed.as_secs_f64()
    }
}

/// A TLS client session over the load's connection.
type Session = asynchat_core::tls::rustls::ClientConnection;

struct Conn {
    stream: TcpStream,
    /// Over TLS: the session, which takes plaintext and holds records until the socket does.
    tls: Option<Box<Session>>,
    /// Bytes owed to the server (lines to send).
    owed: usize,
    /// Bytes sent so far, to know where in the line pattern the next byte is.
    sent: usize,
    writable: bool,
}

/// Errors that only mean "not now": the socket is drained, full, or not connected yet (the
/// next readiness event comes for it). An interrupted call is not one of them: it is retried,
/// as an edge already reported will not be reported again.
fn not_now(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
    )
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

impl Conn {
    /// Reads until the socket is drained, handing `on_data` the bytes (plaintext, over TLS).
    /// The server's end of stream is an error: the load never closes first.
    fn receive(&mut self, buf: &mut [u8], mut on_data: impl FnMut(&[u8])) -> io::Result<()> {
        let closed = || io::Error::new(io::ErrorKind::UnexpectedEof, "server closed");
        loop {
            let Some(tls) = &mut self.tls else {
                match self.stream.read(buf) {
                    Ok(0) => return Err(closed()),
                    Ok(n) => on_data(&buf[..n]),
                    Err(e) if interrupted(&e) => {}
                    Err(e) if not_now(&e) => return Ok(()),
                    Err(e) => return Err(e),
                }
                continue;
            };
            match tls.read_tls(&mut self.stream) {
                Ok(0) => return Err(closed()),
                Ok(_) => {
                    tls.process_new_packets().map_err(io::Error::other)?;
                    loop {
                        match tls.reader().read(buf) {
                            Ok(0) => return Err(closed()),
                            Ok(n) => on_data(&buf[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if interrupted(&e) => {}
                Err(e) if not_now(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends from `data`: how many bytes were taken (0: none now).
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            let written = match &mut self.tls {
                None => self.stream.write(data),
                Some(tls) => tls.writer().write(data),
            };
            match written {
                Err(e) if interrupted(&e) => {}
                Err(e) if not_now(&e) => return Ok(0),
                other => return other,
            }
        }
    }

    /// Writes out the records a TLS session holds (a handshake flight, encrypted lines).
    fn flush(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        while tls.wants_write() {
            match tls.write_tls(&mut self.stream) {
                Ok(_) => {}
                Err(e) if interrupted(&e) => {}
                Err(e) if not_now(&e) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether anything waits for the socket to be writable.
    fn wants_write(&self) -> bool {
        self.owed > 0 || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }
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
        let tls = match &load.tls {
            Some(config) => {
                let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
                let session = Session::new(config.clone(), name).map_err(io::Error::other)?;
                Some(Box::new(session))
            }
            None => None,
        };
        conns.push(Conn {
            stream,
            tls,
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
            let mut lines = 0;
            conn.receive(&mut buf, |data| {
                lines += memchr::memchr_iter(b'\n', data).count();
            })?;
            if now >= counting_from {
                responses += lines as u64;
            }
            all_responses += lines as u64;
            conn.owed += lines * line_len;
            while conn.owed > 0 {
                let at = conn.sent % line_len;
                let n = conn.owed.min(block.len() - at);
                match conn.send(&block[at..at + n])? {
                    0 => break,
                    k => {
                        conn.sent += k;
                        conn.owed -= k;
                    }
                }
            }
            conn.flush()?;
            let want = conn.wants_write();
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
    let cipher_suite = conns.first().and_then(|c| c.tls.as_ref()).map(|tls| {
        format!(
            "{:?}, {:?}",
            tls.protocol_version(),
            tls.negotiated_cipher_suite().map(|s| s.suite())
        )
    });
    Ok(Report {
        responses,
        all_responses,
        elapsed: end.saturating_duration_since(counting_from),
        cipher_suite,
    })
}
